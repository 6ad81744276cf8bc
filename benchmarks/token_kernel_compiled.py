"""Every tile shape of the fused token-mixing kernel compiled for an H100/H200 (sm_90a) on
this machine, no GPU needed (``mixer_lib.kernel_compile``): registers, spills, shared memory
and the instructions that move and multiply the tiles, at the padded token counts of the
Table 1 variants at 224 px (49 -> 64 for /32, 196 -> 256 for /16, 256 for H/14), both
GELUs, the residual stream in bf16 (as the model hands it to the kernel, under bf16 autocast
and with bf16 weights) and in float32 (a stream kept in float32, which the model does not
make; the kernel takes it).

    python benchmarks/token_kernel_compiled.py            # about 5 minutes on 2 cores
    PYTHONPATH=<site-packages of another Triton> python benchmarks/token_kernel_compiled.py
                                                          # as another Triton compiles it

Writes ``results/perf/benchmark-token-kernel-compiled-sm_90a-triton-<version>.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TOKENS = (49, 196)  # padded to 64 and 256, the two tile heights the variants meet
X_DTYPES = ("bf16", "fp32")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="all",
                        help="'all', or indices into CONFIGS and form names, comma-separated")
    parser.add_argument("--tokens", default=",".join(map(str, TOKENS)))
    parser.add_argument("--gelu", default="tanh,exact")
    parser.add_argument("--x-dtype", default=",".join(X_DTYPES))
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90")
    parser.add_argument("--out", default=str(REPO / "results" / "perf"),
                        help="folder for the JSON record ('' = do not write)")
    args = parser.parse_args(argv)
    import torch
    import triton

    from mixer_lib import kernel_compile, token_kernel
    from mixer_lib.provenance import add_result, environment
    from mixer_lib.rundir import set_aside_record

    try:
        configs = token_kernel.select_configs(args.configs)
    except ValueError as err:
        parser.error(str(err))
    gelus = args.gelu.split(",")
    dtypes = args.x_dtype.split(",")
    if set(gelus) - {"tanh", "exact"} or set(dtypes) - set(X_DTYPES):
        parser.error(f"--gelu takes tanh,exact; --x-dtype takes {','.join(X_DTYPES)}")
    kinds = {"fp32": torch.float32, "bf16": torch.bfloat16}
    arch = kernel_compile.arch_name(args.arch)
    record = {"benchmark": "token_kernel_compiled", "arch": arch,
              "triton": triton.__version__, "ptxas": kernel_compile.ptxas_version(),
              "weights_dtype": "bf16", "results": [], "environment": environment("cpu")}
    path = None
    if args.out:
        path = (Path(args.out) / f"benchmark-token-kernel-compiled-{arch}-triton-"
                f"{triton.__version__}.json")
        set_aside_record(path)
    for index in configs:
        config = token_kernel.CONFIGS[index]
        for tokens in (int(t) for t in args.tokens.split(",")):
            for gelu in gelus:
                for dtype in dtypes:
                    case = {"config": list(config), "tokens": tokens,
                            "block_tokens": token_kernel._block_tokens(tokens), "gelu": gelu,
                            "x_dtype": dtype}
                    try:
                        case |= kernel_compile.compile_config(config, tokens, gelu == "exact",
                                                              kinds[dtype], arch=args.arch)
                    except Exception as err:  # a shape Triton cannot build is a finding
                        case["error"] = f"{type(err).__name__}: {str(err).strip()[-300:]}"
                    add_result(record, case, path)
    return record


if __name__ == "__main__":
    main()
