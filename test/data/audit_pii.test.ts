/**
 * PII detectors: true positives from published references (card issuers' documented test numbers,
 * the IBAN registry's example IBANs, RFC 4291/5952 address forms, AWS's documented example key) and
 * look-alikes that must not fire.
 */
import { cardIssuer, findPII, ibanValid, ipv6Valid, luhnValid, maskPII, redactPII } from '../../lib/data/audit';

const kinds = (text: string) => findPII(text).map((s) => [s.kind, s.text]);

describe('credit cards: 13-19 digits, Luhn, issuer prefixes', () => {
  // Test numbers published by Stripe ("Testing" docs) and PayPal for sandbox use.
  const published: Array<[string, string]> = [
    ['4111111111111111', 'visa'], ['4242 4242 4242 4242', 'visa'], ['5555-5555-5555-4444', 'mastercard'],
    ['2223003122003222', 'mastercard'], ['378282246310005', 'amex'], ['6011 1111 1111 1117', 'discover'],
    ['3530111333300000', 'jcb'], ['30569309025904', 'diners'], ['6200000000000005', 'unionpay'],
  ];
  test.each(published)('%s is a %s card', (number, issuer) => {
    const spans = findPII(`pay with ${number} today`);
    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({ kind: 'credit_card', text: number, detail: issuer });
  });

  test('look-alikes do not fire: failing Luhn, unknown prefix, too short or long, order numbers', () => {
    expect(luhnValid('4111111111111112')).toBe(false);
    expect(kinds('card 4111111111111112 and 4111 1111 1111 1112')).toEqual([]);
    expect(luhnValid('1234567812345670')).toBe(true); // passes Luhn, but no issuer starts with 1
    expect(kinds('order 1234567812345670')).toEqual([]);
    expect(kinds('411111111111')).toEqual([]); // 12 digits
    expect(kinds('41111111111111111111')).toEqual([]); // 20 digits: not a card, and no card inside a longer number
    expect(cardIssuer('4111111111111111')).toBe('visa');
  });

  test('a card inside a run of number groups is found with its own span', () => {
    const spans = findPII('ref 12 4111 1111 1111 1111 exp 12 29');
    expect(spans.map((s) => s.text)).toEqual(['4111 1111 1111 1111']);
  });
});

describe('IBAN: country length and mod 97', () => {
  // Example IBANs of the SWIFT IBAN Registry / the European Committee for Banking Standards.
  const valid = ['GB82 WEST 1234 5698 7654 32', 'GB82WEST12345698765432', 'DE89 3704 0044 0532 0130 00', 'FR14 2004 1010 0505 0001 3M02 606', 'NL91 ABNA 0417 1643 00', 'BE68 5390 0754 7034', 'NO93 8601 1117 947'];
  test.each(valid)('%s is found', (iban) => {
    expect(kinds(`IBAN: ${iban}.`)).toEqual([['iban', iban]]);
    expect(ibanValid(iban.replace(/ /g, ''))).toBe(true);
  });

  test('a wrong check digit, a wrong length or an unknown country does not fire', () => {
    expect(kinds('GB83 WEST 1234 5698 7654 32')).toEqual([]);
    expect(kinds('DE89370400440532013001')).toEqual([]); // one BBAN digit changed
    expect(kinds('GB82WEST1234569876543')).toEqual([]); // 21 characters, GB has 22
    expect(ibanValid('XX82WEST12345698765432')).toBe(false);
  });
});

describe('IP addresses', () => {
  test('IPv4 with octets <= 255; not 999.1.1.1, versions 1.2.3.4.5 or v1.2.3.4', () => {
    expect(kinds('from 192.168.0.1 and 8.8.8.8.')).toEqual([['ipv4', '192.168.0.1'], ['ipv4', '8.8.8.8']]);
    expect(kinds('999.1.1.1 and 1.256.1.1')).toEqual([]);
    expect(findPII('127.0.0.1 10.2.3.4 172.31.0.1 172.32.0.1 192.168.1.1 169.254.0.9').map((s) => s.detail)).toEqual(['loopback', 'private', 'private', 'public', 'private', 'link_local']);
    expect(kinds('version 1.2.3.4.5 released, also v1.2.3.4')).toEqual([]);
  });

  // RFC 4291 section 2.2 and RFC 5952 examples.
  const valid = ['2001:DB8:0:0:8:800:200C:417A', '2001:db8::8:800:200c:417a', 'FF01::101', '::1', '::13.1.68.3', '::FFFF:129.144.52.38', 'fe80::1ff:fe23:4567:890a', '2001:db8::', '1:2:3:4:5:6:7::'];
  test.each(valid)('IPv6 %s', (address) => {
    expect(ipv6Valid(address)).toBe(true);
    expect(kinds(`host ${address} up`)).toEqual([['ipv6', address]]);
  });

  test('IPv6 look-alikes: times, MAC addresses, two "::", too many groups, C++ names', () => {
    for (const s of ['2001:db8::1::1', '1:2:3:4:5:6:7:8:9', '12345::1', 'gggg::1', '1:2:3:4:5:6:7', '::1.2.3.256', '1:2:3:4:5:6:7:8::']) expect(ipv6Valid(s)).toBe(false);
    expect(kinds('at 12:30:45, mac 00:1a:2b:3c:4d:5e, std::vector and ab::cd')).toEqual([]);
  });
});

describe('emails, phones, URLs with credentials', () => {
  test('emails', () => {
    expect(kinds('write to jane.doe+news@mail.example.co.uk, or a_b@x-y.org')).toEqual([['email', 'jane.doe+news@mail.example.co.uk'], ['email', 'a_b@x-y.org']]);
    expect(kinds('not an email: @handle, user@localhost, a@b.c')).toEqual([]);
  });

  test('phones: E.164, North American and European forms', () => {
    const numbers = ['030/12345678', '+1 415 555 2671', '+14155552671', '+44 20 7946 0958', '+49 (30) 1234567', '(415) 555-2671', '415-555-2671', '415.555.2671', '1-800-555-0199', '020 7946 0958', '030 12345678', '01 23 45 67 89', '06-12345678'];
    for (const n of numbers) expect([n, kinds(`call ${n} now`)]).toEqual([n, [['phone', n]]]);
  });

  test('phone look-alikes: dates, plain digit runs, decimals, version strings', () => {
    expect(kinds('on 2024-01-31, 31/01/2024, 31.01.2024 or 01.02.2024 at 10:30')).toEqual([]);
    expect(kinds('invoice 4155552671 and 123456789 totals 12.345.678 and build 1.2.3.4.5')).toEqual([]);
    expect(kinds('+12 is a score, 555-1234 is too short')).toEqual([]);
    // Seen in the SpamAssassin emails: a Slashdot story id (a date path) and a time before a date.
    expect(kinds('article.pl?sid=02/09/17/121210 and At 13:06 06/08/2002, John wrote')).toEqual([]);
  });

  test('URLs with a user and password; a URL without credentials is not PII', () => {
    expect(kinds('db at postgres://admin:s3cret@db.example.com:5432/app')).toEqual([['url_credentials', 'postgres://admin:s3cret@db.example.com:5432']]);
    expect(kinds('see https://example.com/a:b@c and https://user@example.com')).toEqual([['email', 'user@example.com']]);
  });
});

describe('API keys and private keys by published prefixes', () => {
  test.each([
    ['AKIAIOSFODNN7EXAMPLE', 'aws_access_key'], // AWS's documented example access key id
    ['ASIAY34FZKBOKMUTVV7A', 'aws_access_key'],
    [`ghp_${'a1B2c3D4e5'.repeat(3)}a1B2c3`, 'github_token'],
    [`gho_${'Z'.repeat(36)}`, 'github_token'],
    [`github_pat_11ABCDEFG0${'x'.repeat(12)}_${'y'.repeat(59)}`, 'github_token'],
    ['xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx', 'slack_token'],
    [`sk-${'Ab3'.repeat(16)}`, 'openai_key'],
    [`sk-proj-${'Q9z_'.repeat(10)}`, 'openai_key'],
    [`sk_live_${'4eC39HqLyjWDarjtT1zdp7dc'}`, 'stripe_key'],
    [`AIzaSy${'D'.repeat(33)}`, 'google_api_key'],
  ])('%s', (key, detail) => {
    expect(findPII(`token=${key} ok`)).toEqual([expect.objectContaining({ kind: 'api_key', text: key, detail })]);
  });

  test('a sentence with "sk-" inside words, and short prefixes, do not fire', () => {
    expect(kinds('a task-oriented, risk-averse desk-bound sk-learn user; AKIA1234; ghp_short; xoxb-1')).toEqual([]);
  });

  test('PEM private key blocks, with or without their END line', () => {
    const block = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----';
    expect(findPII(`key:\n${block}\nthanks`)).toEqual([expect.objectContaining({ kind: 'private_key', text: block, detail: 'openssh_private_key' })]);
    expect(kinds('-----BEGIN PRIVATE KEY-----\nMIIEvQ')).toEqual([['private_key', '-----BEGIN PRIVATE KEY-----']]);
    expect(kinds('-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----')).toEqual([]);
  });
});

describe('redaction', () => {
  test('each find becomes its placeholder; the rest of the text is kept', () => {
    const text = 'Mail bob@example.com, card 4111 1111 1111 1111, IBAN DE89370400440532013000, from 10.0.0.1.';
    expect(redactPII(text).text).toBe('Mail [EMAIL], card [CREDIT_CARD], IBAN [IBAN], from [IPV4].');
  });

  test('overlaps resolve to one find: a URL\'s password@host is not also an email', () => {
    expect(redactPII('ftp://me:pw@files.example.org/x').text).toBe('[URL_WITH_CREDENTIALS]/x');
  });

  test('masking keeps two characters at each end', () => {
    expect(maskPII('bob@example.com')).toBe('bo***********om');
    expect(maskPII('abc')).toBe('***');
  });
});
