#!/usr/bin/env python3
"""Export the original labeller's image embedder, DINOv2 ViT-L/14 with registers, to ONNX for the gpu pool.

The original pipeline (docs/annotation.md) embeds each figure with
torch.hub.load('facebookresearch/dinov2', 'dinov2_vitl14_reg'): a 224x224 RGB image in [0,1] (squash resize, NO
ImageNet mean/std) -> the normed CLS token, 1024-d. This script wraps exactly that forward in an ONNX graph with one
input and one output, as activities/annotate/embedder.ts expects:

    pixel_values  float32 (or float16 with --fp16) [batch, 3, 224, 224], values in [0,1]
    embedding     float32 (or float16)             [batch, 1024]

and writes, next to the model, <name>.preprocess.json with the original's preprocessing, which the embedder reads.

Usage (a machine with torch; a GPU is not needed to export):

    python3 -m venv .venv-export && . .venv-export/bin/activate
    pip install torch onnx onnxruntime onnxconverter-common   # + transformers for --source hf
    python scripts/export_dinov2_onnx.py --out data/models/dinov2-vitl14-reg.onnx
    python scripts/export_dinov2_onnx.py --out data/models/dinov2-vitl14-reg-fp16.onnx --fp16

then name the file in the release input: "annotate": {"modelPath": "models/dinov2-vitl14-reg-fp16.onnx", ...}.

Not run by CI (torch is not installed there); the tests use the small generated model (tiny-vit.ts) with the same
interface. Checks it makes before writing: onnx.checker, and onnxruntime (CPU) against torch on a random batch of 2
(and a batch of 3 to prove the batch dimension is dynamic); it prints the max abs difference (fp32: ~1e-5;
fp16: ~5e-2 for |values| up to ~3.6, as measured in docs/annotation.md).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import sys
from pathlib import Path

ORIGINAL_PREPROCESS = {
    # torchvision Resize((224, 224)) on a PIL image (bilinear, antialias) + ToTensor(); no Normalize.
    "size": 224,
    "resize": "squash",
    "kernel": "linear",
    "mean": None,
    "std": None,
    "background": [255, 255, 255],
}


def bake_position_embedding(module, size: int, patch: int, dim: int, hf: bool) -> None:
    """DINOv2's position embedding is trained for 518 px (37x37 patches) and resized at run time to the input's grid
    with antialiased bicubic interpolation, an op the ONNX exporters do not all support. The input is always 224 px
    here, so the resized table is computed once, eagerly (the same numbers the model would compute), and the module
    returns it as a constant."""
    import torch

    tokens = torch.zeros(1, 1 + (size // patch) ** 2, dim)
    with torch.no_grad():
        fixed = module.interpolate_pos_encoding(tokens, size, size).detach().clone()
    module.register_buffer("baked_pos_embed", fixed, persistent=False)

    def interpolate_pos_encoding(x, a, b):  # (x, w, h) on the hub model, (embeddings, height, width) on HF's
        if x.shape[1] != fixed.shape[1] or a != size or b != size:
            raise ValueError(f"this export takes {size}x{size} inputs only")
        return module.baked_pos_embed.to(x.dtype)

    module.interpolate_pos_encoding = interpolate_pos_encoding


def load_model(source: str, name: str):
    import torch

    if source == "hub":
        # The exact model upstream used. xformers, when installed, swaps in memory-efficient attention that the ONNX
        # exporter cannot trace; the hub code checks XFORMERS_DISABLED at import and uses plain attention.
        os.environ.setdefault("XFORMERS_DISABLED", "1")
        model = torch.hub.load("facebookresearch/dinov2", name).eval()
        bake_position_embedding(model, 224, model.patch_size, model.embed_dim, hf=False)
        forward = model  # forward(x) = head(x_norm_clstoken), head = Identity: the normed CLS token

    else:
        from transformers import Dinov2WithRegistersModel

        hf = Dinov2WithRegistersModel.from_pretrained(name).eval()
        bake_position_embedding(hf.embeddings, 224, hf.config.patch_size, hf.config.hidden_size, hf=True)

        class Pooler(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                # pooler_output = layernorm(sequence_output)[:, 0]: the normed CLS token, as the hub model returns.
                return self.m(pixel_values=x).pooler_output

        forward = Pooler(hf)

    class Embedder(torch.nn.Module):
        """pixel_values [B,3,224,224] in [0,1] -> embedding [B,1024]; nothing added or removed."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m(pixel_values)

    return Embedder(forward).eval()


def export(model, out: Path, opset: int, dynamo: bool) -> None:
    import torch

    dummy = torch.rand(2, 3, 224, 224)
    kwargs = dict(
        input_names=["pixel_values"],
        output_names=["embedding"],
        dynamic_axes={"pixel_values": {0: "batch"}, "embedding": {0: "batch"}},
        opset_version=opset,
        do_constant_folding=True,
    )
    params = inspect.signature(torch.onnx.export).parameters
    if "dynamo" in params:
        kwargs["dynamo"] = dynamo  # torch >= 2.9 defaults to the dynamo exporter; be explicit either way
    elif dynamo:
        sys.exit("this torch has no dynamo ONNX exporter; drop --dynamo")
    if "external_data" in params:
        # One self-contained file (1.2 GB fits protobuf's 2 GB limit): the embedder fingerprints the .onnx file alone.
        kwargs["external_data"] = False
    with torch.no_grad():
        torch.onnx.export(model, (dummy,), str(out), **kwargs)


def to_fp16(src: Path, dst: Path, keep_io_types: bool) -> None:
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    # keep_io_types=False: the graph takes and returns float16 (the embedder converts to and from half bits);
    # True keeps float32 at the boundary with Casts inside. Either works with embedder.ts.
    half = float16.convert_float_to_float16(model, keep_io_types=keep_io_types)
    onnx.save(half, str(dst))


def verify(model, path: Path, fp16: bool) -> float:
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    onnx.checker.check_model(str(path))  # by path: works for models near the 2 GB protobuf limit too
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    out = sess.get_outputs()[0]
    assert inp.name == "pixel_values" and out.name == "embedding", (inp.name, out.name)
    worst = 0.0
    for batch in (2, 3):  # 3 proves the batch dimension is dynamic
        x = torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = model(x).float().numpy()
        feed = x.numpy().astype(np.float16 if inp.type == "tensor(float16)" else np.float32)
        got = sess.run(["embedding"], {"pixel_values": feed})[0].astype(np.float32)
        assert got.shape == ref.shape == (batch, 1024), (got.shape, ref.shape)
        worst = max(worst, float(np.abs(got - ref).max()))
    limit = 0.1 if fp16 else 1e-3
    if worst > limit:
        sys.exit(f"onnxruntime differs from torch by {worst:.3g} (limit {limit}); not keeping {path}")
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="the .onnx file to write (e.g. data/models/dinov2-vitl14-reg.onnx)")
    ap.add_argument("--source", choices=["hub", "hf"], default="hub", help="torch.hub (upstream's) or Hugging Face transformers")
    ap.add_argument("--name", default=None, help="hub entry point or HF repo (default dinov2_vitl14_reg / facebook/dinov2-with-registers-large)")
    ap.add_argument("--fp16", action="store_true", help="convert the weights and activations to float16 (half the file)")
    ap.add_argument("--keep-io-types", action="store_true", help="with --fp16: keep float32 input/output")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--dynamo", action="store_true", help="use torch's dynamo exporter (the GPU measurements in docs/annotation.md used it)")
    ap.add_argument("--no-verify", action="store_true")
    args = ap.parse_args()

    name = args.name or ("dinov2_vitl14_reg" if args.source == "hub" else "facebook/dinov2-with-registers-large")
    if args.out.suffix != ".onnx":
        sys.exit("--out must end in .onnx")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model = load_model(args.source, name)

    fp32_path = args.out.with_name(args.out.stem + ".fp32-tmp.onnx") if args.fp16 else args.out
    export(model, fp32_path, args.opset, args.dynamo)
    if args.fp16:
        to_fp16(fp32_path, args.out, args.keep_io_types)
        fp32_path.unlink()
    if not args.no_verify:
        diff = verify(model, args.out, args.fp16)
        print(f"onnxruntime vs torch: max abs diff {diff:.3g}")

    sidecar = args.out.with_name(args.out.stem + ".preprocess.json")
    sidecar.write_text(json.dumps(ORIGINAL_PREPROCESS, indent=2) + "\n")
    h = hashlib.sha256()
    with open(args.out, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e9:.2f} GB, sha256 {h.hexdigest()}) and {sidecar}")


if __name__ == "__main__":
    main()
