import * as path from 'node:path';
import { ndjson, readJsonIfExists, readNdjson, sha256Hex, writeFileAtomic } from '../common/files';
import type { QuarantineRecord } from '../common/quarantine';
import { md5Hex } from '../fetch/source';
import { quarantine } from '../common/quarantine';
import {
  cancellationSignal,
  heartbeat,
  runUnitStage,
  type StageManifest,
  type Staged,
  type UnitTask,
} from '../common/stage';
import { readTaskFile, writeTaskFileAtomic } from '../common/threads';
import { mediaPath } from '../fetch/activity';
import type { ParsedArticleLine } from '../parse/activity';
import { ModelInputsWriter, releaseDecodeConfig } from './model-inputs';
import { normalizeFigureImage } from './normalize';

/** A figure image ready to publish: a standard JPEG staged under the unit, with its measured facts. */
export interface PreparedImage {
  key: string;
  article: string;
  width: number;
  height: number;
  bytes: number;
  sha256: string;
  sourceFormat: string;
  passthrough: boolean;
}

export interface PrepareImagesResult {
  candidates: number;
  prepared: number;
  rejected: number;
  passthrough: number;
  converted: number;
}

export function stagedImagePath(unitDir: string, key: string): string {
  return path.join(unitDir, 'images', `${key}.jpg`);
}

export async function prepareImages(task: UnitTask): Promise<Staged<PrepareImagesResult>> {
  return runUnitStage(task, 'images', async ({ layout, unit, quarantine: q }) => {
    const unitDir = layout.unitDir(unit.unitId);
    const lines = await readNdjson<ParsedArticleLine>(path.join(unitDir, 'articles.ndjson'));
    const prepared: PreparedImage[] = [];
    const result: PrepareImagesResult = { candidates: 0, prepared: 0, rejected: 0, passthrough: 0, converted: 0 };
    const outputs: string[] = [];
    // A staged file is used only for the figure the media stage placed it for, and only with the bytes the plan
    // recorded: figures the media stage refused are skipped (their record is there), and a file the media stage
    // did not list, or whose md5 differs, is refused here rather than published under this figure's caption.
    const mediaManifest = await readJsonIfExists<StageManifest<unknown>>(layout.stageManifest(unit.unitId, 'media'));
    const placed = new Set((mediaManifest?.outputs ?? []).map((o) => o.path));
    const refusedAtMedia = new Set(
      (await readNdjson<QuarantineRecord>(layout.quarantineFile(unit.unitId, 'media'))).map((r) => r.figure),
    );
    // Annotate's input for each figure, made during its decode here (model-inputs.ts).
    const preprocess = await releaseDecodeConfig(task.release);
    const inputs = new ModelInputsWriter(unitDir, preprocess);
    const signal = cancellationSignal();
    for (const line of lines) {
      for (const fig of line.figures) {
        signal?.throwIfAborted();
        if (fig.rejected || !fig.mediaKey || refusedAtMedia.has(fig.key)) continue;
        let source: Buffer;
        const refuse = (reason: string, detail: string) =>
          q.push(quarantine({ article: line.article, figure: fig.key, stage: 'images', reason, detail }));
        try {
          const file = mediaPath(unitDir, fig.mediaKey);
          if (!placed.has(path.relative(layout.root, file))) {
            refuse('image-not-staged', `${fig.mediaKey} is not among the files the media stage placed`);
            continue;
          }
          source = await readTaskFile(file);
        } catch (err) {
          refuse('image-not-staged', `${fig.mediaKey}: ${(err as Error).message}`);
          continue;
        }
        if (fig.mediaMd5 && md5Hex(source) !== fig.mediaMd5.toLowerCase()) {
          refuse(
            'image-checksum',
            `staged ${fig.mediaKey} is not the object the plan named (md5 ${md5Hex(source)}, expected ${fig.mediaMd5})`,
          );
          continue;
        }
        result.candidates++;
        const img = await normalizeFigureImage(source, {
          minSide: task.release.images.minSide,
          maxPixels: task.release.images.maxPixels,
          jpegQuality: task.release.images.jpegQuality,
          preprocess,
        });
        if (!img.ok) {
          result.rejected++;
          q.push(
            quarantine({
              article: line.article,
              figure: fig.key,
              stage: 'images',
              reason: img.reason,
              detail: `${fig.mediaFile}: ${img.detail}`,
            }),
          );
          continue;
        }
        const out = stagedImagePath(unitDir, fig.key);
        await writeTaskFileAtomic(out, img.jpeg);
        outputs.push(out);
        if (img.input) await inputs.add(fig.key, img.input);
        prepared.push({
          key: fig.key,
          article: line.article,
          width: img.width,
          height: img.height,
          bytes: img.jpeg.length,
          sha256: sha256Hex(img.jpeg),
          sourceFormat: img.sourceFormat,
          passthrough: img.passthrough,
        });
        result.prepared++;
        if (img.passthrough) result.passthrough++;
        else result.converted++;
        heartbeat({ prepared: result.prepared });
      }
    }
    const index = path.join(unitDir, 'images.ndjson');
    await writeFileAtomic(index, ndjson(prepared));
    outputs.push(index, ...(await inputs.finish()));
    return { result, outputs };
  });
}
