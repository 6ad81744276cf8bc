"""Each tile shape of the fused token-mixing kernel alone (``mixer_lib.token_kernel.CONFIGS``).

Every shape runs in its own process (a kernel that faults leaves the others measurable): it
is launched on Mixer-B/16's token-mixing shapes in bf16, compared with the reference
(``TokenDense`` products, GELU, biases, residual), and timed with ``triton.testing.do_bench``.
The autotuner then only ever chooses among shapes that ran here.

    python benchmarks/token_kernel_configs.py            # on a GPU; prints one line per shape
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def one(index: int, batch: int, variant: str) -> dict:
    import torch
    import triton

    from mixer_lib import create_model, token_kernel

    cfg = create_model(variant, num_classes=10).cfg
    s, c, ds = cfg.num_patches, cfg.hidden_dim, cfg.tokens_mlp_dim
    gen = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen)).to("cuda", torch.bfloat16)

    x, y = rand(batch, s, c), rand(batch, s, c)
    w1, b1 = rand(ds, s, scale=s ** -0.5), rand(ds, scale=0.1)
    w2, b2 = rand(s, ds, scale=ds ** -0.5), rand(s, scale=0.1)
    config = token_kernel.CONFIGS[index]
    out = torch.empty_like(x)

    def launch():
        token_kernel.run_config(x, y, w1, b1, w2, b2, False, config, out)

    launch()
    torch.cuda.synchronize()
    h = torch.nn.functional.gelu(torch.baddbmm(b1.float()[None, :, None],
                                               w1.float().expand(batch, -1, -1), y.float()),
                                 approximate="tanh")
    ref = x.float() + torch.baddbmm(b2.float()[None, :, None],
                                    w2.float().expand(batch, -1, -1), h)
    ms = triton.testing.do_bench(launch, warmup=5, rep=50)
    flops = 2 * 2 * batch * s * c * ds
    return {"config": list(config), "max_abs_diff": (out.float() - ref).abs().max()
            .item(), "ms": ms, "tflops": flops / ms / 1e9}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--variant", default="Mixer-B/16")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one(args.one, args.batch, args.variant)))
        return []
    from mixer_lib.token_kernel import CONFIGS

    results = []
    for index in range(len(CONFIGS)):
        done = subprocess.run([sys.executable, __file__, "--one", str(index), "--batch",
                               str(args.batch), "--variant", args.variant],
                              capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        else:
            result = {"config": list(CONFIGS[index]),
                      "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
        results.append(result)
        print(json.dumps(result), flush=True)
    return results


if __name__ == "__main__":
    main()
