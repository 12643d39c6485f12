/**
 * The demo's NER labels: the rules of lib/demo/tasks.ts (stated in the report) on hand-written
 * email text, and the sentence window chosen around the first entity.
 */
import { emailSentence, emailTokens, NER_WINDOW_TOKENS, ruleTags } from '../../lib/demo/tasks';
import { findTagProblem } from '../../lib/data';

describe('demo NER rules', () => {
  test('punctuation at the edges of a piece is split off; URLs, addresses and numbers are tagged', () => {
    const tokens = emailTokens('Visit (http://example.com/a?b=1). Mail "joe.b+x@mail.example.org", pay $1,200.50 or 15% by 12/31, call 555-0100 now!');
    expect(tokens).toEqual([
      'Visit', '(', 'http://example.com/a?b=1', ')', '.', 'Mail', '"', 'joe.b+x@mail.example.org', '"', ',', 'pay', '$1,200.50', 'or', '15%', 'by', '12/31', ',',
      'call', '555-0100', 'now', '!',
    ]);
    const tags = ruleTags(tokens);
    expect(tokens.filter((_, i) => tags[i] !== 'O').map((t, i) => `${t}=${tags.filter((x) => x !== 'O')[i]}`)).toEqual([
      'http://example.com/a?b=1=B-URL', 'joe.b+x@mail.example.org=B-EMAIL', '$1,200.50=B-NUM', '15%=B-NUM', '12/31=B-NUM', '555-0100=B-NUM',
    ]);
    expect(ruleTags(['www.x.org', 'user@host', 'v2', '1.', 'a1'])).toEqual(['B-URL', 'O', 'O', 'O', 'O']);
  });

  test('the sentence is a window around the first entity (valid IOB2), the start when there is none', () => {
    const words = Array.from({ length: 40 }, (_, i) => `w${String.fromCharCode(97 + (i % 26))}`);
    words[30] = 'http://x.org';
    const s = emailSentence(words.join(' '))!;
    expect(s.tokens).toHaveLength(NER_WINDOW_TOKENS);
    expect(s.tokens[4]).toBe('http://x.org');
    expect(findTagProblem(s.tags)).toBeNull();
    expect(emailSentence('just words here')).toEqual({ tokens: ['just', 'words', 'here'], tags: ['O', 'O', 'O'] });
    expect(emailSentence('   ')).toBeNull();
  });
});
