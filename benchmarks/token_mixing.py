"""Which form of token mixing is fastest on this device? (issue 17: the inference target)

The H200 records show that Mixer-B/16's token-mixing products run far below the device's
matmul peak (``results/perf/benchmark-perf-gpu-products-NVIDIA-H200.json``: 56 and 135
TFLOP/s against about 550 for the channel MLPs), so that at 11 % of the FLOPs they take half
of the products' time. This benchmark times the same token-mixing MLP (dense over the token
axis, GELU, dense back; ``(B, S, C) -> (B, S, C)``, contiguous in and out) written in several
ways, on one device, in one run:

* ``left``: the model's form (:class:`mixer_lib.model.TokenDense`, ``baddbmm`` with the weight
  read through a stride-0 view; no copies);
* ``left-bmm-add``: the same products as ``bmm``, the bias added after;
* ``right``: each sample's product with the roles of the operands swapped
  (``x[b]^T @ W^T``, transposed views, no copies), the output transposed back once;
* ``broadcast-matmul``: ``torch.matmul(W, x)`` with broadcasting, the bias added after;
* ``transposed``: the paper's ``MLP(X^T)^T`` as timm (and this project's earlier form)
  computes it: the input transposed to ``(B, C, S)``, two ``nn.Linear`` products over
  ``B*C`` rows, transposed back;
* ``padded``: the model's form with the token axis zero-padded to a multiple of 64 for the
  first product (whether a longer reduction runs faster than it costs);
* ``left-cublaslt`` (on a GPU): the model's form through cuBLASLt instead of cuBLAS;
* ``compiled``: the model's form under ``torch.compile`` (and with ``--max-autotune``, last,
  under ``mode="max-autotune-no-cudagraphs"``, which also tries Triton's matrix kernels);
* ``fused-kernel`` (where :mod:`mixer_lib.token_kernel` runs: a GPU with Triton):
  both products, GELU and the biases in one kernel, the hidden activations never stored
  (inference only: no training time). It also reads a residual and adds it (zeros here),
  which the other forms leave to the model, so its time is the larger for that.

For each: the MLP alone, forward (inference) and forward with backward (training), ms and
TFLOP/s of its products; then each eager form swapped into the whole model (inference and a
training step, images/s; the model's own with and without the fused kernel, which it uses for
inference where it applies). Every form's output is checked against ``left`` first; before
that, the channel MLP's dense layer with its GELU in one call (:mod:`mixer_lib.dense_gelu`)
against the tanh and the exact GELU in float32 (``dense_gelu_float32``: the tanh GELU on a
GPU, where the library takes that call; the exact one on a CPU, where it does not), and,
where the fused kernel runs, the kernel against the reference in whole models (``check``:
the TMA form, the default, in bf16 in a child process, whose fault could not end this one's
measurements, then the pointer form in bf16 and fp16; ``--checks`` names the models,
``--checks-only`` stops there).

    python benchmarks/token_mixing.py                      # on a GPU: Mixer-B/16, bf16, 128
    python benchmarks/token_mixing.py --device cpu --variant Mixer-T/4 --batch 2 --img-size 32

Writes ``results/perf/benchmark-token-mixing-<device>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mixer_lib import create_model, dense_gelu, token_kernel  # noqa: E402
from mixer_lib.model import VARIANTS, TokenDense, TokenMixingMlp, get_config  # noqa: E402
from mixer_lib.provenance import device_name, device_tag, environment, write_json  # noqa: E402
from mixer_lib.rundir import set_aside_record  # noqa: E402
from mixer_lib.signals import run_child  # noqa: E402
from mixer_lib.timing import attempt, exit_if_failed, median_seconds  # noqa: E402

Form = Callable[..., torch.Tensor]  # (x, w1, b1, w2, b2, act) -> (B, S, C)


def left(x, w1, b1, w2, b2, act):
    return TokenDense.apply(act(TokenDense.apply(x, w1, b1)), w2, b2)


def left_bmm_add(x, w1, b1, w2, b2, act):
    def dense(t, w, b):
        return torch.bmm(w.expand(t.shape[0], -1, -1), t) + b[None, :, None]
    return dense(act(dense(x, w1, b1)), w2, b2)


def right(x, w1, b1, w2, b2, act):
    n = x.shape[0]
    h = act(torch.baddbmm(b1, x.mT, w1.t().expand(n, -1, -1)))  # (B, C, D_S)
    return torch.baddbmm(b2, h, w2.t().expand(n, -1, -1)).mT.contiguous()


def broadcast_matmul(x, w1, b1, w2, b2, act):
    h = act(torch.matmul(w1, x) + b1[:, None])
    return torch.matmul(w2, h) + b2[:, None]


def transposed(x, w1, b1, w2, b2, act):
    h = act(F.linear(x.mT.contiguous(), w1, b1))  # (B, C, D_S)
    return F.linear(h, w2, b2).mT.contiguous()


def padded(x, w1, b1, w2, b2, act, multiple: int = 64):
    pad = -x.shape[1] % multiple
    x, w1 = F.pad(x, (0, 0, 0, pad)), F.pad(w1, (0, pad))
    return left(x, w1, b1, w2, b2, act)


def with_blas(form: Form, library: str) -> Form:
    """``form`` run with ``torch.backends.cuda.preferred_blas_library(library)``."""
    def run(*args):
        before = torch.backends.cuda.preferred_blas_library()
        torch.backends.cuda.preferred_blas_library(library)
        try:
            return form(*args)
        finally:
            torch.backends.cuda.preferred_blas_library(before)
    return run


def fused_kernel(x, w1, b1, w2, b2, act):
    """The fused kernel with a zero residual: the branch alone, as the other forms give it."""
    return token_kernel.token_mixing_residual(torch.zeros_like(x), x, w1, b1, w2, b2,
                                              act.approximate == "none")


EAGER: dict[str, Form] = {"left": left, "left-bmm-add": left_bmm_add, "right": right,
                          "broadcast-matmul": broadcast_matmul, "transposed": transposed,
                          "padded": padded}


def seconds(fn: Callable[[], object], device: torch.device, repeats: int,
            warmup: int) -> float:
    """Median seconds of one call, synchronised on a GPU."""
    def once() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return median_seconds(once, repeats, warmup)


def mlp_case(form: Form, shapes: tuple[int, int, int, int], dtype: torch.dtype,
             device: torch.device, repeats: int, warmup: int,
             reference: torch.Tensor | None, trains: bool = True) -> dict:
    """One form of the MLP alone: forward and (where it ``trains``) forward+backward ms,
    products' TFLOP/s, and the largest difference from ``reference`` (the ``left`` form's
    output)."""
    batch, tokens, channels, hidden = shapes
    gen = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    x = rand(batch, tokens, channels)
    w1, b1 = rand(hidden, tokens) / tokens ** 0.5, rand(hidden)
    w2, b2 = rand(tokens, hidden) / hidden ** 0.5, rand(tokens)
    act = torch.nn.GELU(approximate="tanh")
    flops = 2 * 2 * batch * tokens * channels * hidden  # two products, forward
    with torch.no_grad():
        out = form(x, w1, b1, w2, b2, act)
    params = [t.requires_grad_() for t in (x, w1, b1, w2, b2)]
    grad = rand(batch, tokens, channels)

    def forward() -> None:
        with torch.no_grad():
            form(x, w1, b1, w2, b2, act)

    def train() -> None:
        form(x, w1, b1, w2, b2, act).backward(grad)
        for p in params:
            p.grad = None

    fwd = seconds(forward, device, repeats, warmup)
    both = seconds(train, device, repeats, warmup) if trains else None
    diff = (out.float() - reference.float()).abs().max().item() if reference is not None \
        else 0.0
    return {"forward_ms": 1e3 * fwd, "train_ms": 1e3 * both if both else None,
            "forward_tflops": flops / fwd / 1e12,
            "train_tflops": 3 * flops / both / 1e12 if both else None,
            "max_abs_diff_from_left": diff, "output": out}


def model_case(form: Form | None, variant: str, img_size: int, batch: int,
               device: torch.device, amp: bool, repeats: int, warmup: int,
               fused: bool = False) -> dict:
    """The whole model with its token-mixing MLP computed by ``form`` (None: the model's
    own; with the fused kernel for inference where it applies if ``fused``): inference and a
    training step (forward, backward, SGD), images/s."""
    original = TokenMixingMlp.forward

    def forward(self, x):
        w1, b1, w2, b2 = self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias
        dtype = token_kernel.autocast_dtype(x)
        if dtype is not None:
            x, w1, b1, w2, b2 = (t.to(dtype) for t in (x, w1, b1, w2, b2))
        return form(x, w1, b1, w2, b2, self.act)

    torch.manual_seed(0)
    model = create_model(variant, num_classes=1000, img_size=img_size,
                         fused_token_mixing=fused and form is None).to(device)
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    cast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else \
        contextlib.nullcontext()
    if form is not None:
        TokenMixingMlp.forward = forward
    try:
        def infer() -> None:
            with torch.no_grad(), cast:
                model(x)

        def step() -> None:
            with cast:
                loss = F.cross_entropy(model(x).float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        model.eval()
        infer_s = seconds(infer, device, repeats, warmup)
        model.train()
        step_s = seconds(step, device, repeats, warmup)
    finally:
        TokenMixingMlp.forward = original
    return {"infer_img_s": batch / infer_s, "train_img_s": batch / step_s}


CHECKED = ("Mixer-S/32", "Mixer-B/16", "Mixer-B/16@gelu=exact", "Mixer-H/14")
# the TMA form, bf16, in a process of its own before the timings (B/16 first: the one
# mixer_lib.fused_paths reads)
CHECKED_TMA = ("Mixer-B/16", "Mixer-S/32", "Mixer-H/14")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def checked_specs(arg: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The variants checked in the pointer form and in the TMA form: :data:`CHECKED` and
    :data:`CHECKED_TMA`, or both those of ``--checks`` (``"Mixer-B/16,Mixer-S/32@gelu=exact"``);
    ValueError naming what is not a variant."""
    if arg is None:
        return CHECKED, CHECKED_TMA
    specs = tuple(s.strip() for s in arg.split(",") if s.strip())

    def known(spec: str) -> bool:
        variant, _, option = spec.partition("@")
        try:
            get_config(variant)
        except ValueError:
            return False
        return option in ("", "gelu=exact")

    wrong = [s for s in specs if not known(s)]
    if wrong or not specs:
        raise ValueError(f"--checks: {', '.join(wrong) or 'nothing named'}: name variants "
                         f"({', '.join(VARIANTS)}), each optionally with @gelu=exact")
    return specs, specs


def check_case(spec: str, device: torch.device, dtype: torch.dtype, batch: int = 4,
               form: str = "pointers") -> dict:
    """The fused kernel (in ``form``) against the reference in a whole model
    (``variant[@gelu=exact]``, random weights with every parameter, biases too, moved off
    its initial value): :func:`mixer_lib.token_kernel.compare_with_reference`."""
    variant, _, opt = spec.partition("@")
    torch.manual_seed(0)
    model = create_model(variant, num_classes=10, gelu="exact" if opt else "tanh",
                         token_kernel_form=form).to(device)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    size = model.cfg.img_size
    images = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    return token_kernel.compare_with_reference(model, images, dtype)


def check_name(spec: str, dtype: str, form: str) -> str:
    """A check's key in the record: ``"Mixer-B/16 bf16"``, ``"Mixer-B/16 bf16 tma"``."""
    return f"{spec} {dtype}" + ("" if form == "pointers" else f" {form}")


def check_line(name: str, case: dict) -> str:
    """A check's result as the run prints it."""
    return f"  check {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in case.items())


def checks_here(specs: list[str], form: str, dtypes: list[str], device: torch.device) -> None:
    """Each of ``specs`` in ``form`` and each of ``dtypes`` checked (:func:`check_case`),
    one JSON line per check on stdout: ``{"name": ..., "case": {...}}``, or ``"error"``
    where it raised (:func:`~mixer_lib.timing.attempt`; the next ones still run)."""
    for spec in specs:
        for dtype in dtypes:
            name, failed = check_name(spec, dtype, form), []
            case = attempt(f"check {name}", partial(check_case, spec, device, DTYPES[dtype],
                                                    form=form), failed)
            line = {"name": name, "error": failed[0]["error"]} if failed else \
                {"name": name, "case": case}
            print(json.dumps(line), flush=True)


def checks_in_child(specs: list[str], form: str, dtypes: list[str], device: torch.device,
                    timeout: float = 300) -> tuple[dict[str, dict], list[dict]]:
    """:func:`checks_here` in a child process (:func:`mixer_lib.signals.run_child`), so that
    a fault of the kernel (an illegal memory access ends a CUDA context) cannot end this
    process's measurements: the cases by name, and a failure (``what``, ``error``) for each
    check that raised or that the child did not reach (with its last line of stderr)."""
    cmd = [sys.executable, __file__, "--device", str(device), "--check-specs", ",".join(specs),
           "--check-form", form, "--check-dtypes", ",".join(dtypes)]
    done = run_child(cmd, timeout)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    cases = {line["name"]: line["case"] for line in lines if "case" in line}
    last = (done.stderr.strip().splitlines() or [f"the child ended with status "
                                                 f"{done.returncode}"])[-1][:300]
    reported = {line["name"]: line.get("error") for line in lines}
    failures = [{"what": f"check {name}", "error": reported.get(name) or f"not reached: {last}"}
                for name in (check_name(spec, dtype, form) for spec in specs for dtype in dtypes)
                if name not in cases]
    return cases, failures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="Mixer-B/16")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-autotune", action="store_true",
                        help="also compile with mode='max-autotune-no-cudagraphs' (minutes)")
    parser.add_argument("--no-compile", action="store_true", help="leave compiled forms out")
    parser.add_argument("--out", default=str(REPO / "results" / "perf"))
    parser.add_argument("--checks", help="comma-separated variants (variant[@gelu=exact]) "
                        "whose whole model the fused kernel is checked in, both forms "
                        f"(default: {', '.join(CHECKED)}; the TMA form: "
                        f"{', '.join(CHECKED_TMA)})")
    parser.add_argument("--checks-only", action="store_true",
                        help="stop after the checks: no timings (the record holds the checks)")
    # only the whole-model checks of these variants, one JSON line each (checks_in_child)
    parser.add_argument("--check-specs", help=argparse.SUPPRESS)
    parser.add_argument("--check-form", default="pointers", choices=token_kernel.FORMS,
                        help=argparse.SUPPRESS)
    parser.add_argument("--check-dtypes", default="bf16", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check_specs:
        checks_here(args.check_specs.split(","), args.check_form,
                    args.check_dtypes.split(","), torch.device(args.device))
        return {}
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("need --batch >= 1, --repeats >= 1 and --warmup >= 0")
    try:
        checked, checked_tma = checked_specs(args.checks)
    except ValueError as err:
        parser.error(str(err))
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU")
    amp = device.type == "cuda"  # bf16 on a GPU, as training runs there; float32 on a CPU
    dtype = torch.bfloat16 if amp else torch.float32
    cfg = create_model(args.variant, num_classes=10, img_size=args.img_size).cfg
    shapes = (args.batch, cfg.num_patches, cfg.hidden_dim, cfg.tokens_mlp_dim)
    forms = dict(EAGER)
    if device.type == "cuda":  # the same products through cuBLASLt instead of cuBLAS
        forms["left-cublaslt"] = with_blas(left, "cublaslt")
    if not args.no_compile:
        forms["compiled"] = torch.compile(left)
    fused = device.type == "cuda" and token_kernel.triton is not None
    if fused:
        forms["fused-kernel"] = fused_kernel
    out = Path(args.out) / f"benchmark-token-mixing-{device_tag(device_name(device))}.json"
    set_aside_record(out)
    record = {"benchmark": "token_mixing", "variant": args.variant, "img_size": args.img_size,
              "batch": args.batch, "shapes_B_S_C_DS": list(shapes),
              "precision": "bf16" if amp else "float32", "repeats": args.repeats,
              "mlp": {}, "model": {}, "failed": [], "environment": environment(device)}
    reference: list[torch.Tensor] = []
    failures = record["failed"]  # each step that raised: what and its error; the rest go on

    def attempted(what: str, step: Callable[[], None]) -> None:
        attempt(what, step, failures)
        write_json(out, record)  # after each step: a run cut short keeps what it measured

    def mlp(name: str, form: Form) -> None:
        t = time.perf_counter()
        case = mlp_case(form, shapes, dtype, device, args.repeats, args.warmup,
                        reference[0] if reference else None, trains=form is not fused_kernel)
        reference.append(case.pop("output"))
        record["mlp"][name] = case | {"wall_s": time.perf_counter() - t}
        both = f"{case['train_ms']:7.3f} ms ({case['train_tflops']:6.1f} TFLOP/s)" \
            if case["train_ms"] else "(inference only)"
        print(f"  MLP {name:22s} forward {case['forward_ms']:7.3f} ms "
              f"({case['forward_tflops']:6.1f} TFLOP/s), forward+backward {both}, max |diff| "
              f"{case['max_abs_diff_from_left']:.2e}", flush=True)

    def check(spec: str, name: str, kind: torch.dtype) -> None:
        case = check_case(spec, device, kind)
        record["check"][check_name(spec, name, "pointers")] = case
        print(check_line(f"{spec:22s} {name}", case), flush=True)

    # the channel MLP's dense layer and GELU in one call: the tanh GELU (CUDA) or exact?
    torch.manual_seed(0)
    fc = torch.nn.Linear(cfg.hidden_dim, cfg.channels_mlp_dim, device=device)
    x = torch.randn(4, cfg.num_patches, cfg.hidden_dim, device=device)

    def check_dense_gelu() -> None:
        gelu = record["dense_gelu_float32"] = dense_gelu.compare_with_reference(fc, x)
        print("  check dense+GELU in one call, float32: max |diff| from tanh GELU "
              f"{gelu['vs_tanh']:.2e}, from exact {gelu['vs_exact']:.2e}", flush=True)

    attempted("check dense+GELU", check_dense_gelu)
    if fused:  # first: the kernel must agree with the reference before it is timed
        record["check"] = {}
        if token_kernel.tma_device(device):  # the default form first, in a process of its own
            cases, failed = checks_in_child(list(checked_tma), "tma", ["bf16"], device)
            record["check"] |= cases
            failures += failed
            for name, case in cases.items():
                print(check_line(name, case), flush=True)
            write_json(out, record)
        for spec in checked:
            for name, kind in DTYPES.items():
                attempted(f"check {spec} {name}", partial(check, spec, name, kind))
    if args.checks_only:
        write_json(out, record)
        print(f"record: {out}")
        exit_if_failed(failures, "step(s)")
        return record
    for name, form in forms.items():  # "left" first, unguarded: the others' reference
        if reference:
            attempted(f"MLP {name}", partial(mlp, name, form))
        else:
            mlp(name, form)
            write_json(out, record)
    models = {"model's own": (None, fused), **({"model's own, unfused": (None, False)}
                                               if fused else {}),
              **{name: (form, False) for name, form in EAGER.items()}}
    def whole_model(name: str, form: Form | None, with_kernel: bool) -> None:
        case = model_case(form, args.variant, args.img_size, args.batch, device, amp,
                          max(3, args.repeats // 2), max(1, args.warmup // 2), with_kernel)
        record["model"][name] = case
        print(f"  {args.variant} with {name:16s} inference {case['infer_img_s']:9.1f} "
              f"img/s, training {case['train_img_s']:9.1f} img/s", flush=True)

    for name, (form, with_kernel) in models.items():
        attempted(f"{args.variant} with {name}", partial(whole_model, name, form, with_kernel))
    if args.max_autotune and not args.no_compile:  # last: it may take minutes
        attempted("MLP compiled-max-autotune", partial(
            mlp, "compiled-max-autotune", torch.compile(left, mode="max-autotune-no-cudagraphs")))
    print(f"record: {out}")
    exit_if_failed(failures, "step(s)")
    return record


if __name__ == "__main__":
    main()
