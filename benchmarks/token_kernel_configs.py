"""Each tile shape of the fused token-mixing kernel alone (``mixer_lib.token_kernel.CONFIGS``).

Every shape runs in its own process (a kernel that faults leaves the others measurable): it
is launched on a variant's token-mixing shapes (Mixer-B/16: S = 196, C = 768, D_S = 384),
compared with the reference in float32 (the products over the token axis, GELU, biases,
residual), and timed with ``triton.testing.do_bench``. The autotuner then chooses among
shapes that ran here; one that faults names itself in the record.

    python benchmarks/token_kernel_configs.py       # on a GPU, bf16, batch 128
    python benchmarks/token_kernel_configs.py --configs 2,tma   # entry 2 and the TMA form's
    TRITON_INTERPRET=1 python benchmarks/token_kernel_configs.py --device cpu --dtype fp16 \\
        --variant Mixer-T/4 --batch 1 --out ''      # Triton's CPU interpreter (no timing)

Writes ``results/perf/benchmark-token-kernel-configs-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mixer_lib.signals import run_child  # noqa: E402

DTYPES = ("bf16", "fp16")


def one(index: int, batch: int, variant: str, device: str, dtype: str) -> dict:
    """Shape ``CONFIGS[index]`` launched, checked and (on a GPU) timed, in this process."""
    import torch

    from mixer_lib import get_config, token_kernel

    cfg = get_config(variant)  # the shapes only: building the model's weights took seconds
    s, c, ds = cfg.num_patches, cfg.hidden_dim, cfg.tokens_mlp_dim
    kind = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    gen = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen)).to(device, kind)

    x, y = rand(batch, s, c), rand(batch, s, c)
    w1, b1 = rand(ds, s, scale=s ** -0.5), rand(ds, scale=0.1)
    w2, b2 = rand(s, ds, scale=ds ** -0.5), rand(s, scale=0.1)
    config = token_kernel.CONFIGS[index]
    if config[0] == "tma" and not token_kernel.tma_possible(x, y, w2):
        raise SystemExit(f"the TMA form cannot run on {device} with these shapes (it needs "
                         "compute capability 9.0+ and rows of 16-byte multiples)")
    out = torch.empty_like(x)

    def launch():
        token_kernel.run_config(x, y, w1, b1, w2, b2, False, config, out)

    launch()
    hidden = torch.nn.functional.gelu(
        torch.einsum("hs,bsc->bhc", w1.float(), y.float()) + b1.float()[:, None],
        approximate="tanh")
    ref = x.float() + torch.einsum("sh,bhc->bsc", w2.float(), hidden) + b2.float()[:, None]
    result = {"config": list(config), "max_abs_diff": (out.float() - ref).abs().max().item()}
    if device != "cpu":
        import triton

        ms = triton.testing.do_bench(launch, warmup=5, rep=50)
        result |= {"ms": ms, "tflops": 2 * 2 * batch * s * c * ds / ms / 1e9}
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--variant", default="Mixer-B/16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=DTYPES, default="bf16")
    parser.add_argument("--out", default=str(REPO / "results" / "perf"),
                        help="folder for the JSON record ('' = do not write)")
    parser.add_argument("--configs", default="all",
                        help="'all', or indices into CONFIGS and form names, comma-separated")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one(args.one, args.batch, args.variant, args.device, args.dtype)))
        return {}
    if args.device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        parser.error("--device cpu runs the kernel through Triton's interpreter: set "
                     "TRITON_INTERPRET=1")
    import torch

    from mixer_lib import token_kernel
    from mixer_lib.provenance import add_result, device_name, device_tag, environment
    from mixer_lib.rundir import set_aside_record

    try:
        chosen = token_kernel.select_configs(args.configs)
    except ValueError as err:
        parser.error(str(err))

    record = {"benchmark": "token_kernel_configs", "variant": args.variant,
              "batch": args.batch, "dtype": args.dtype, "results": [],
              "environment": environment(torch.device(args.device))}
    path = None
    if args.out:
        path = Path(args.out) / ("benchmark-token-kernel-configs-"
                                 f"{device_tag(device_name(torch.device(args.device)))}.json")
        set_aside_record(path)
    for index in chosen:
        done = run_child([sys.executable, __file__, "--one", str(index), "--batch",
                          str(args.batch), "--variant", args.variant, "--device", args.device,
                          "--dtype", args.dtype], timeout=300)
        if done.returncode == 0:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        else:
            result = {"config": list(token_kernel.CONFIGS[index]),
                      "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
        add_result(record, result, path)
    return record


if __name__ == "__main__":
    main()
