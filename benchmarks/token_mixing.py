"""Token-mixing MLP forms, timed alone (forward, and forward + backward, with the residual).

Why ``TokenMixingMlp`` multiplies from the left (``TokenDense``: a batched ``baddbmm`` on the
(B, S, C) layout, the weight read through a stride-0 view): this compares it with the
transpose form (the paper's ``MLP(X^T)^T`` with einops, what timm does) and with a broadcast
``torch.matmul``, on Mixer-B/16 shapes (S=196, C=768, D_S=384).

    python benchmarks/token_mixing.py --batch 8 32
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixer_lib.model import TokenMixingMlp  # noqa: E402
from mixer_lib.timing import median_seconds  # noqa: E402


def transpose_form(mlp: TokenMixingMlp, x: torch.Tensor) -> torch.Tensor:
    """The paper's form: transpose to (B, C, S), an MLP on the last axis, transpose back."""
    y = rearrange(x, "b s c -> b c s")
    y = mlp.fc2(F.gelu(mlp.fc1(y), approximate="tanh"))
    return rearrange(y, "b c s -> b s c")


def broadcast_matmul(mlp: TokenMixingMlp, x: torch.Tensor) -> torch.Tensor:
    """``W @ x`` with broadcasting, bias added separately."""
    h = torch.matmul(mlp.fc1.weight, x) + mlp.fc1.bias[:, None]
    h = F.gelu(h, approximate="tanh")
    return torch.matmul(mlp.fc2.weight, h) + mlp.fc2.bias[:, None]


def median_ms(fn, warmup: int, repeats: int) -> float:
    return 1e3 * median_seconds(fn, repeats, warmup)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    s, c, d = 196, 768, 384
    mlp = TokenMixingMlp(s, d, "tanh", 0.0)
    forms = {"einops (transpose)": lambda x: transpose_form(mlp, x),
             "ours (TokenDense)": mlp,
             "broadcast matmul": lambda x: broadcast_matmul(mlp, x)}
    print(f"{'batch':>5s} {'form':20s} {'fwd ms':>8s} {'fwd+bwd ms':>11s} {'vs einops':>9s}")
    for b in args.batch:
        x = torch.randn(b, s, c, requires_grad=True)
        base = None
        for name, form in forms.items():
            torch.testing.assert_close(form(x), forms["einops (transpose)"](x))

            def fwd(form=form, x=x):
                with torch.no_grad():
                    x + form(x)

            def step(form=form, x=x):
                (x + form(x)).sum().backward()
                x.grad = None
                mlp.zero_grad(set_to_none=True)

            f_ms, s_ms = median_ms(fwd, 3, args.repeats), median_ms(step, 3, args.repeats)
            base = base or s_ms
            print(f"{b:5d} {name:20s} {f_ms:8.2f} {s_ms:11.2f} {base / s_ms:8.2f}x")


if __name__ == "__main__":
    main()
