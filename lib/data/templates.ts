/**
 * Prompt templates: how a record becomes the text the model reads (the prompt, no loss) and the
 * text it must produce (the completion, trained on).
 *
 * A template is a string with {placeholders}; "{{" and "}}" stand for literal braces. Each kind
 * has one target placeholder: the text before it is the prompt, the placeholder's value and the
 * text after it are the completion. Spaces (U+0020) just before the target placeholder move to the
 * completion, so "Label: {label}" gives the prompt "...Label:" and the completion " positive": GPT-2's
 * BPE joins a space to the word after it, and a prompt ending in a space would make the model
 * predict an unusual space-less token.
 *
 * The defaults (DEFAULT_TEMPLATES):
 *
 *   text               {text}                       (the document as is; no template applies)
 *   prompt_completion  {prompt}{completion}         (used as is: put separators in your data, or
 *                                                    give a template such as "Q: {prompt}\nA: {completion}")
 *   classification     Text: {text}\nLabel: {label} -> prompt "Text: <text>\nLabel:", completion " <label>"
 *   chat               <|{role}|>\n{content}        per message, messages joined by "\n":
 *
 *       <|system|>
 *       You are terse.
 *       <|user|>
 *       Hi
 *       <|assistant|>
 *       Hello.
 *
 *     Each assistant message with weight 1 (the default) is trained on: its {content} and whatever
 *     follows {content} in the template; everything else is prompt. {Role} is the capitalised role
 *     ("User"), for templates like "{Role}: {content}".
 *
 * The tasks (each trained on its answer only):
 *
 *   qa             Context: {context}\nQuestion: {question}\nAnswer: {answer}   ({answer}: the first gold answer)
 *   ner            Sentence: {sentence}\nEntities:\n{entities}                 ({sentence}: the tokens joined by
 *                  spaces; {entities}: "TYPE: span" lines or "none", see ner.ts)
 *   translation    {source_lang}: {source}\n{target_lang}: {target}             (the languages from --source-lang
 *                  and --target-lang, "Source" and "Target" when not given)
 *   summarization  {document}\nTL;DR: {summary}                                (GPT-2's own summarisation cue)
 *
 * With a model that has a chat template (and no --template) a task record is a two-message
 * conversation instead: the user asks (TASK_CHAT_PROMPTS) and the assistant answers with the same
 * answer text, trained on as any assistant turn (taskMessages).
 *
 * The example's EOS token (<|endoftext|>) follows the completion and is trained on too, so the model
 * learns where to stop.
 *
 * When the model's tokenizer has a chat template (tokenizer_config.json's chat_template or
 * chat_template.jinja) and no --template is given, chat records are rendered by that template instead
 * (lib/data/chat.ts), as the model was trained to read conversations.
 */
import type { Tokenizer } from '../tokenizer';
import { ChatTemplate, chatTemplateOf } from '../tokenizer/chat_template';
import { formatEntities } from './ner';
import { isTaskKind, type ChatMessage, type DataKind, type DataRecord, type TaskKind, type TaskRecord } from './records';

export const DEFAULT_TEMPLATES: Record<DataKind, string> = {
  text: '{text}',
  prompt_completion: '{prompt}{completion}',
  classification: 'Text: {text}\nLabel: {label}',
  chat: '<|{role}|>\n{content}',
  qa: 'Context: {context}\nQuestion: {question}\nAnswer: {answer}',
  ner: 'Sentence: {sentence}\nEntities:\n{entities}',
  translation: '{source_lang}: {source}\n{target_lang}: {target}',
  summarization: '{document}\nTL;DR: {summary}',
};

/** The user's message of a task record in chat form (same placeholders as the templates, no target). */
export const TASK_CHAT_PROMPTS: Record<TaskKind, string> = {
  qa: 'Answer the question from the context.\nContext: {context}\nQuestion: {question}',
  ner: 'List the named entities of the sentence, one "TYPE: span" line each in order, or "none".\nSentence: {sentence}',
  translation: 'Translate from {source_lang} to {target_lang}:\n{source}',
  summarization: 'Summarize:\n{document}',
};

/**
 * Values a template may hold that come from the command line, not the record (translation only).
 * They are written into the template when it is compiled.
 */
export interface TemplateVariables {
  sourceLang?: string;
  targetLang?: string;
}

const VARIABLE_PLACEHOLDERS: Record<string, { key: keyof TemplateVariables; flag: string; fallback: string }> = {
  source_lang: { key: 'sourceLang', flag: '--source-lang', fallback: 'Source' },
  target_lang: { key: 'targetLang', flag: '--target-lang', fallback: 'Target' },
};

/** What reports show as the template of chat data rendered by the model's own chat template. */
export const MODEL_CHAT_TEMPLATE = "the model's chat_template";

/**
 * The model's chat template for chat data, unless a --template was given (which wins) or the model
 * has none (then DEFAULT_TEMPLATES.chat applies).
 */
export function chatTemplateFor(kind: DataKind, userTemplate: string | undefined, tokenizer: Tokenizer): ChatTemplate | null {
  return (kind === 'chat' || isTaskKind(kind)) && userTemplate === undefined ? chatTemplateOf(tokenizer) : null;
}

/** Between chat messages (part of the next message's prompt). */
export const CHAT_MESSAGE_SEPARATOR = '\n';

/** Placeholders each kind's template may use, and its target (the trained part). */
const PLACEHOLDERS: Record<DataKind, { allowed: readonly string[]; target: string }> = {
  text: { allowed: ['text'], target: 'text' },
  prompt_completion: { allowed: ['prompt', 'completion'], target: 'completion' },
  classification: { allowed: ['text', 'label'], target: 'label' },
  chat: { allowed: ['role', 'Role', 'content'], target: 'content' },
  qa: { allowed: ['context', 'question', 'answer'], target: 'answer' },
  ner: { allowed: ['sentence', 'entities'], target: 'entities' },
  translation: { allowed: ['source', 'target', 'source_lang', 'target_lang'], target: 'target' },
  summarization: { allowed: ['document', 'summary'], target: 'summary' },
};

type Part = { literal: string } | { field: string };

/** A parsed template: the parts before and after its (single) target placeholder. */
export interface CompiledTemplate {
  kind: DataKind;
  source: string;
  before: Part[];
  /** Spaces moved from the end of `before` to the start of the completion. */
  movedSpaces: string;
  after: Part[];
  /** The command-line values written into the template (with their fallbacks), for the chat form. */
  variables: Record<string, string>;
}

/** The placeholder values a kind takes from TemplateVariables (fallbacks filled in); a variable the kind does not take is an error. */
function resolveVariables(kind: DataKind, variables: TemplateVariables): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(VARIABLE_PLACEHOLDERS)) {
    const given = variables[v.key];
    if (!PLACEHOLDERS[kind].allowed.includes(name)) {
      if (given !== undefined) throw new Error(`${v.flag} applies to translation data, not ${kind}`);
      continue;
    }
    if (given !== undefined && given.trim() === '') throw new Error(`${v.flag}: expected a language name but received an empty string`);
    out[name] = given ?? v.fallback;
  }
  return out;
}

export function compileTemplate(kind: DataKind, template?: string, variables: TemplateVariables = {}): CompiledTemplate {
  const source = template ?? DEFAULT_TEMPLATES[kind];
  if (kind === 'text' && template !== undefined && template !== DEFAULT_TEMPLATES.text) {
    throw new Error(`template: plain text data is used as is; a template applies to prompt_completion, chat, classification and task data (received ${JSON.stringify(template)})`);
  }
  const resolved = resolveVariables(kind, variables);
  const { allowed, target } = PLACEHOLDERS[kind];
  const parts: Part[] = [];
  let literal = '';
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if ((c === '{' || c === '}') && source[i + 1] === c) {
      literal += c;
      i++;
      continue;
    }
    if (c === '}') throw new Error(`template ${JSON.stringify(source)}: unmatched '}' at character ${i + 1} (write '}}' for a literal brace)`);
    if (c !== '{') {
      literal += c;
      continue;
    }
    const close = source.indexOf('}', i);
    if (close < 0) throw new Error(`template ${JSON.stringify(source)}: unclosed '{' at character ${i + 1} (write '{{' for a literal brace)`);
    const name = source.slice(i + 1, close);
    if (!allowed.includes(name)) {
      throw new Error(`template ${JSON.stringify(source)}: unknown placeholder {${name}} for ${kind} data; expected ${allowed.map((a) => `{${a}}`).join(', ')}`);
    }
    i = close;
    if (name in resolved) {
      literal += resolved[name];
      continue;
    }
    if (literal) parts.push({ literal });
    literal = '';
    parts.push({ field: name });
  }
  if (literal) parts.push({ literal });
  const targets = parts.filter((p) => 'field' in p && p.field === target).length;
  if (targets !== 1) {
    throw new Error(`template ${JSON.stringify(source)}: expected {${target}} exactly once for ${kind} data (it marks what the model must produce) but found it ${targets} times`);
  }
  const at = parts.findIndex((p) => 'field' in p && p.field === target);
  const before = parts.slice(0, at);
  let movedSpaces = '';
  const last = before[before.length - 1];
  if (last && 'literal' in last) {
    const trimmed = last.literal.replace(/ +$/, '');
    movedSpaces = last.literal.slice(trimmed.length);
    if (trimmed) before[before.length - 1] = { literal: trimmed };
    else before.pop();
  }
  return { kind, source, before, movedSpaces, after: parts.slice(at + 1), variables: resolved };
}

/** A piece of rendered text and whether the model is trained to produce it. */
export interface Segment {
  text: string;
  trained: boolean;
}

function fill(parts: readonly Part[], values: Record<string, string>): string {
  let out = '';
  for (const p of parts) out += 'literal' in p ? p.literal : values[p.field];
  return out;
}

function checkKind(template: CompiledTemplate, record: DataRecord): void {
  if (template.kind !== record.kind) throw new Error(`template for ${template.kind} data used on a ${record.kind} record (${record.file}:${record.line})`);
}

/** The record as consecutive segments (prompt parts untrained, completion parts trained). */
export function renderSegments(record: DataRecord, template: CompiledTemplate = compileTemplate(record.kind)): Segment[] {
  checkKind(template, record);
  switch (record.kind) {
    case 'text':
      return [{ text: record.text, trained: true }];
    case 'prompt_completion':
    case 'classification':
    case 'qa':
    case 'ner':
    case 'translation':
    case 'summarization': {
      const values = recordValues(record);
      const targetValue = values[PLACEHOLDERS[record.kind].target];
      return [
        { text: fill(template.before, values), trained: false },
        { text: template.movedSpaces + targetValue + fill(template.after, values), trained: true },
      ].filter((s) => s.text.length > 0);
    }
    case 'chat': {
      const segments: Segment[] = [];
      record.messages.forEach((m, i) => {
        const values = messageValues(m);
        const separator = i > 0 ? CHAT_MESSAGE_SEPARATOR : '';
        const whole = template.movedSpaces + m.content + fill(template.after, values);
        if (m.role === 'assistant' && m.weight !== 0) {
          segments.push({ text: separator + fill(template.before, values), trained: false });
          segments.push({ text: whole, trained: true });
        } else {
          segments.push({ text: separator + fill(template.before, values) + whole, trained: false });
        }
      });
      return mergeSegments(segments);
    }
  }
}

/** A one-answer record's placeholder values (its target included). */
function recordValues(record: Exclude<DataRecord, { kind: 'text' | 'chat' }>): Record<string, string> {
  switch (record.kind) {
    case 'prompt_completion':
      return { prompt: record.prompt, completion: record.completion };
    case 'classification':
      return { text: record.text, label: record.label };
    case 'qa':
      return { context: record.context, question: record.question, answer: record.answers[0] };
    case 'ner':
      return { sentence: record.tokens.join(' '), entities: formatEntities(record.tokens, record.tags) };
    case 'translation':
      return { source: record.source, target: record.target };
    case 'summarization':
      return { document: record.document, summary: record.summary };
  }
}

/**
 * A task record as the conversation a chat model is trained on: the user's request
 * (TASK_CHAT_PROMPTS, with the template's language names) and the assistant's answer.
 */
export function taskMessages(record: TaskRecord, template: CompiledTemplate): ChatMessage[] {
  checkKind(template, record);
  const values: Record<string, string> = { ...recordValues(record), ...template.variables };
  const request = TASK_CHAT_PROMPTS[record.kind].replace(/\{(\w+)\}/g, (_, name: string) => values[name]);
  return [{ role: 'user', content: request }, { role: 'assistant', content: values[PLACEHOLDERS[record.kind].target] }];
}

function messageValues(m: ChatMessage): Record<string, string> {
  return { role: m.role, Role: m.role[0].toUpperCase() + m.role.slice(1), content: m.content };
}

/** Joins neighbours with the same `trained` and drops empty segments. */
function mergeSegments(segments: Segment[]): Segment[] {
  const out: Segment[] = [];
  for (const s of segments) {
    if (s.text.length === 0) continue;
    const last = out[out.length - 1];
    if (last && last.trained === s.trained) last.text += s.text;
    else out.push({ ...s });
  }
  return out;
}

/**
 * The record's prompt and completion text after the template: what a model is given and what it
 * should answer. Text: prompt '' and the whole text. Chat: everything up to and including the last
 * assistant message's marker, and that message's content (messages after it are left out).
 */
export function renderRecord(record: DataRecord, template?: string | CompiledTemplate): { prompt: string; completion: string } {
  const compiled = typeof template === 'object' ? template : compileTemplate(record.kind, template);
  checkKind(compiled, record);
  switch (record.kind) {
    case 'text':
      return { prompt: '', completion: record.text };
    case 'prompt_completion':
    case 'classification':
    case 'qa':
    case 'ner':
    case 'translation':
    case 'summarization': {
      const segments = renderSegments(record, compiled);
      const prompt = segments.filter((s) => !s.trained).map((s) => s.text).join('');
      const completion = segments.filter((s) => s.trained).map((s) => s.text).join('');
      return { prompt, completion };
    }
    case 'chat': {
      let last = -1;
      record.messages.forEach((m, i) => { if (m.role === 'assistant') last = i; });
      // Every message of the prompt is context: render them all untrained, then the last assistant's.
      const context = record.messages.slice(0, last).map((m) => ({ ...m, weight: 0 as const, role: m.role }));
      const lastMessage = record.messages[last];
      const segments = renderSegments({ ...record, messages: [...context, { ...lastMessage, weight: 1 }] }, compiled);
      const trained = segments[segments.length - 1];
      return { prompt: segments.slice(0, -1).map((s) => s.text).join(''), completion: trained.text };
    }
  }
}
