/**
 * The Hub's dataset-card metadata rules that this project checks before uploading a card (the planner) and that the
 * loopback stand-in enforces on a README.md commit, as the Hub does (an invalid card is refused with a 400).
 * Sources (docs/publishing.md): the license ids and the metadata shape of the installed @huggingface/hub
 * (types/public.ts `License`, types/api/api-dataset.ts `ApiDatasetMetadata`), the task ids of @huggingface/tasks
 * (`PIPELINE_DATA`, the Hub's task list), the size categories of huggingface_hub / datasets, the split-name rule of
 * datasets. The tests compare these lists with the installed packages.
 */
import type { PipelineType } from '@huggingface/hub';
import type { License } from '@huggingface/hub/dist/src/types/public';
import { parse as parseYaml } from 'yaml';

export const HUB_LICENSES = [
  'apache-2.0',
  'mit',
  'openrail',
  'bigscience-openrail-m',
  'creativeml-openrail-m',
  'bigscience-bloom-rail-1.0',
  'bigcode-openrail-m',
  'afl-3.0',
  'artistic-2.0',
  'bsl-1.0',
  'bsd',
  'bsd-2-clause',
  'bsd-3-clause',
  'bsd-3-clause-clear',
  'c-uda',
  'cc',
  'cc0-1.0',
  'cc-by-2.0',
  'cc-by-2.5',
  'cc-by-3.0',
  'cc-by-4.0',
  'cc-by-sa-3.0',
  'cc-by-sa-4.0',
  'cc-by-nc-2.0',
  'cc-by-nc-3.0',
  'cc-by-nc-4.0',
  'cc-by-nd-4.0',
  'cc-by-nc-nd-3.0',
  'cc-by-nc-nd-4.0',
  'cc-by-nc-sa-2.0',
  'cc-by-nc-sa-3.0',
  'cc-by-nc-sa-4.0',
  'cdla-sharing-1.0',
  'cdla-permissive-1.0',
  'cdla-permissive-2.0',
  'wtfpl',
  'ecl-2.0',
  'epl-1.0',
  'epl-2.0',
  'etalab-2.0',
  'eupl-1.1',
  'agpl-3.0',
  'gfdl',
  'gpl',
  'gpl-2.0',
  'gpl-3.0',
  'lgpl',
  'lgpl-2.1',
  'lgpl-3.0',
  'isc',
  'lppl-1.3c',
  'ms-pl',
  'mpl-2.0',
  'odc-by',
  'odbl',
  'openrail++',
  'osl-3.0',
  'postgresql',
  'ofl-1.1',
  'ncsa',
  'unlicense',
  'zlib',
  'pddl',
  'lgpl-lr',
  'deepfloyd-if-license',
  'llama2',
  'llama3',
  'llama3.1',
  'llama3.2',
  'llama3.3',
  'gemma',
  'apple-ascl',
  'apple-amlr',
  'unknown',
  'other',
] as const satisfies readonly License[];

export const HUB_TASK_CATEGORIES = [
  'text-classification',
  'token-classification',
  'table-question-answering',
  'question-answering',
  'zero-shot-classification',
  'translation',
  'summarization',
  'feature-extraction',
  'text-generation',
  'fill-mask',
  'sentence-similarity',
  'text-to-speech',
  'text-to-audio',
  'automatic-speech-recognition',
  'audio-to-audio',
  'audio-classification',
  'audio-text-to-text',
  'voice-activity-detection',
  'depth-estimation',
  'image-classification',
  'object-detection',
  'image-segmentation',
  'text-to-image',
  'image-to-text',
  'image-to-image',
  'image-to-video',
  'unconditional-image-generation',
  'video-classification',
  'reinforcement-learning',
  'robotics',
  'tabular-classification',
  'tabular-regression',
  'tabular-to-text',
  'table-to-text',
  'multiple-choice',
  'text-ranking',
  'text-retrieval',
  'time-series-forecasting',
  'text-to-video',
  'image-text-to-text',
  'image-text-to-image',
  'image-text-to-video',
  'visual-question-answering',
  'document-question-answering',
  'zero-shot-image-classification',
  'graph-ml',
  'mask-generation',
  'zero-shot-object-detection',
  'text-to-3d',
  'image-to-3d',
  'image-feature-extraction',
  'video-text-to-text',
  'keypoint-detection',
  'visual-document-retrieval',
  'any-to-any',
  'video-to-video',
  'other',
] as const satisfies readonly PipelineType[];

/** huggingface_hub's DatasetCardData `size_categories` options (datasets' size_categories_parser). */
export const HUB_SIZE_CATEGORY_VALUES = [
  'n<1K',
  '1K<n<10K',
  '10K<n<100K',
  '100K<n<1M',
  '1M<n<10M',
  '10M<n<100M',
  '100M<n<1B',
  '1B<n<10B',
  '10B<n<100B',
  '100B<n<1T',
  'n>1T',
] as const;

/** datasets' split names: word characters, dot-separated (`^\w+(\.\w+)*$`). */
const SPLIT_NAME = /^\w+(\.\w+)*$/;
/** The card template's `license_name` advice: an id such as `my-license-1.0`. */
const LICENSE_NAME = /^[a-z0-9][a-z0-9.-]*$/;

/** The YAML between the leading `---` lines of a README.md, parsed; null when there is no front matter. */
export function cardFrontMatter(readme: string): { metadata: Record<string, unknown> | null; error?: string } {
  const m = /^---\r?\n([\s\S]*?)\r?\n---(\r?\n|$)/.exec(readme);
  if (!m) return { metadata: null, error: 'no YAML front matter (the card must start with a --- block)' };
  try {
    const doc = parseYaml(m[1]!) as unknown;
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc))
      return { metadata: null, error: 'the front matter is not a YAML mapping' };
    return { metadata: doc as Record<string, unknown> };
  } catch (err) {
    return { metadata: null, error: `the front matter is not valid YAML: ${(err as Error).message.split('\n')[0]}` };
  }
}

const isStr = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
const strOrList = (v: unknown): string[] | null =>
  isStr(v) ? [v] : Array.isArray(v) && v.length > 0 && v.every(isStr) ? (v as string[]) : null;

function validRepoGlob(p: string): boolean {
  return p.length > 0 && !p.startsWith('/') && !p.split('/').includes('..');
}

/** Every rule the metadata breaks, as readable messages; [] when it passes. */
export function validateCardMetadata(meta: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const licenses = new Set<string>(HUB_LICENSES);
  if (meta.license !== undefined) {
    const list = strOrList(meta.license);
    if (!list) problems.push('license must be a license id or a list of them');
    else {
      for (const l of list) if (!licenses.has(l)) problems.push(`license "${l}" is not one of the Hub's license ids`);
      if (list.includes('other')) {
        if (!isStr(meta.license_name)) problems.push('license "other" needs license_name');
        else if (!LICENSE_NAME.test(meta.license_name))
          problems.push(
            `license_name "${meta.license_name}" must be an id like my-license-1.0 (lowercase letters, digits, - and .)`,
          );
        if (!isStr(meta.license_link)) problems.push('license "other" needs license_link');
        else if (!/^(LICENSE|LICENSE\.md|https?:\/\/\S+)$/.test(meta.license_link))
          problems.push('license_link must be LICENSE, LICENSE.md or an http(s) URL');
      }
    }
  }
  if (meta.license_details !== undefined && typeof meta.license_details !== 'string')
    problems.push('license_details must be a string');
  if (meta.pretty_name !== undefined && !isStr(meta.pretty_name)) problems.push('pretty_name must be a string');
  if (meta.language !== undefined) {
    const list = strOrList(meta.language);
    if (!list) problems.push('language must be a language code or a list of them');
    else
      for (const l of list)
        if (!/^[a-z]{2,3}(-[A-Za-z0-9]+)*$/.test(l)) problems.push(`language "${l}" is not a language code`);
  }
  if (meta.tags !== undefined && !(Array.isArray(meta.tags) && meta.tags.every(isStr)))
    problems.push('tags must be a list of strings');
  const tasks = new Set<string>(HUB_TASK_CATEGORIES);
  if (meta.task_categories !== undefined) {
    const list = strOrList(meta.task_categories);
    if (!list) problems.push('task_categories must be a list of task ids');
    else
      for (const t of list) if (!tasks.has(t)) problems.push(`task_categories "${t}" is not one of the Hub's task ids`);
  }
  const sizes = new Set<string>(HUB_SIZE_CATEGORY_VALUES);
  if (meta.size_categories !== undefined) {
    const list = strOrList(meta.size_categories);
    if (!list) problems.push('size_categories must be a list');
    else
      for (const s of list)
        if (!sizes.has(s)) problems.push(`size_categories "${s}" is not one of ${HUB_SIZE_CATEGORY_VALUES.join(', ')}`);
  }
  if (meta.configs !== undefined) {
    if (!Array.isArray(meta.configs) || meta.configs.length === 0) problems.push('configs must be a non-empty list');
    else {
      const names = new Set<string>();
      let defaults = 0;
      for (const [i, c] of (meta.configs as unknown[]).entries()) {
        const cfg = c as Record<string, unknown>;
        if (cfg === null || typeof cfg !== 'object' || Array.isArray(cfg)) {
          problems.push(`configs[${i}] must be a mapping`);
          continue;
        }
        const name = cfg.config_name;
        if (!isStr(name)) problems.push(`configs[${i}] needs a config_name`);
        else if (names.has(name)) problems.push(`config_name "${name}" is used twice`);
        else names.add(name);
        if (cfg.default === true) defaults++;
        else if (cfg.default !== undefined && cfg.default !== false)
          problems.push(`configs[${i}].default must be true or false`);
        if (cfg.data_dir !== undefined && !(isStr(cfg.data_dir) && validRepoGlob(cfg.data_dir)))
          problems.push(`configs[${i}].data_dir must be a relative path`);
        const df = cfg.data_files;
        if (df === undefined) {
          if (cfg.data_dir === undefined) problems.push(`configs[${i}] needs data_files or data_dir`);
        } else if (isStr(df) || (Array.isArray(df) && df.every(isStr))) {
          for (const p of isStr(df) ? [df] : (df as string[]))
            if (!validRepoGlob(p)) problems.push(`configs[${i}] data_files path "${p}" must be relative to the repo`);
        } else if (Array.isArray(df) && df.length > 0) {
          const splits = new Set<string>();
          for (const [j, e] of (df as unknown[]).entries()) {
            const entry = e as Record<string, unknown>;
            if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
              problems.push(`configs[${i}].data_files[${j}] must be a {split, path} mapping`);
              continue;
            }
            if (!isStr(entry.split) || !SPLIT_NAME.test(entry.split))
              problems.push(`configs[${i}].data_files[${j}].split must be a split name (letters, digits, _ and .)`);
            else if (splits.has(entry.split)) problems.push(`configs[${i}] lists split "${entry.split}" twice`);
            else splits.add(entry.split);
            const paths = strOrList(entry.path);
            if (!paths) problems.push(`configs[${i}].data_files[${j}].path must be a path or a list of paths`);
            else
              for (const p of paths)
                if (!validRepoGlob(p))
                  problems.push(`configs[${i}].data_files[${j}] path "${p}" must be relative to the repo`);
          }
        } else problems.push(`configs[${i}].data_files must be a path, a list of paths or a list of {split, path}`);
      }
      if (defaults > 1) problems.push('at most one config can be the default');
    }
  }
  return problems;
}

/** The card's problems, front matter included; [] when the Hub would take it. */
export function validateCard(readme: string): string[] {
  const { metadata, error } = cardFrontMatter(readme);
  return metadata ? validateCardMetadata(metadata) : [error!];
}
