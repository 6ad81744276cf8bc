"""The fused token-mixing kernel (:mod:`mixer_lib.token_kernel`) compiled for a GPU without
one: Triton builds it for a target (sm_90a, an H100's or H200's) down to PTX, and the
``ptxas`` that ships with Triton assembles that and reports registers and spills. What the
GPU will run can so be read on any machine: how many registers each thread needs, how many
bytes of them go to local memory (spills), the shared memory, and which instructions move
and multiply the tiles (``ld.global`` loads that wait, ``cp.async`` copies, TMA copies,
Hopper's ``wgmma`` or the older ``mma.sync``).

Nothing here is a timing: times come from ``benchmarks/token_kernel_configs.py`` on a GPU.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

import torch

from mixer_lib import token_kernel

# PTX instructions counted in the compiled kernel (substring -> what it says)
INSTRUCTIONS = {
    "ld.global": "global loads into registers (the thread waits for them)",
    "cp.async.ca": "asynchronous copies to shared memory (Ampere style)",
    "cp.async.cg": "asynchronous copies to shared memory (Ampere style, L2 only)",
    "cp.async.bulk.tensor": "TMA copies",
    "wgmma.mma_async": "Hopper warp-group products",
    "mma.sync": "warp products (Ampere style)",
}
_TRITON = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}
# The most shared memory one program may use on an H100 or H200 (227 KiB, opted into): a
# shape that needs more cannot launch there (Triton raises OutOfResources; the autotuner
# skips it)
SHARED_LIMIT = 227 * 1024


def ptxas_path() -> str:
    """The ``ptxas`` bundled with Triton's NVIDIA backend."""
    import triton

    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no ptxas at {path}: this Triton has no NVIDIA backend")
    return path


def _signature(form: str, block_s: int, block_c: int, block_h: int, x_dtype: str,
               y_dtype: str, w_dtype: str) -> dict[str, str]:
    if form == "tma":
        tile = f"[1,{block_s},{block_c}]"
        chunk = f"[{block_s},{block_h}]"
        return {"x_desc": f"tensordesc<{x_dtype}{tile}>", "y_desc": f"tensordesc<{y_dtype}{tile}>",
                "w1t_desc": f"tensordesc<{w_dtype}{chunk}>", "b1_ptr": f"*{w_dtype}",
                "w2_desc": f"tensordesc<{w_dtype}{chunk}>", "b2_ptr": f"*{w_dtype}",
                "out_desc": f"tensordesc<{x_dtype}{tile}>", "S": "i32", "C": "i32", "DS": "i32",
                "X_SIZE": "i32", "Y_SIZE": "i32"}
    return {"x_ptr": f"*{x_dtype}", "y_ptr": f"*{y_dtype}", "w1_ptr": f"*{w_dtype}",
            "b1_ptr": f"*{w_dtype}", "w2_ptr": f"*{w_dtype}", "b2_ptr": f"*{w_dtype}",
            "out_ptr": f"*{x_dtype}", "S": "i32", "C": "i32", "DS": "i32"}


def compile_config(config: tuple[str, int, int, int, int], tokens: int, exact_gelu: bool,
                   x_dtype: torch.dtype = torch.bfloat16,
                   w_dtype: torch.dtype = torch.bfloat16, arch: int = 90) -> dict:
    """``config`` (an entry of ``token_kernel.CONFIGS``) built for compute capability
    ``arch`` at ``tokens`` tokens (padded as the kernel pads them) and assembled by ptxas.
    ``x_dtype``: the residual stream's, which the normalised input and the output share
    (bf16 as the model hands it to the kernel, under bf16 autocast and with bf16 weights;
    float32 for a stream kept in float32, which the model does not make). Returns registers
    per thread, spill stores and loads (bytes per thread), shared memory (bytes per program)
    and the counts of :data:`INSTRUCTIONS` in the PTX."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    form, block_c, block_h, warps, stages = config
    block_s = token_kernel._block_tokens(tokens)
    names = (_TRITON[x_dtype], _TRITON[x_dtype], _TRITON[w_dtype])
    signature = _signature(form, block_s, block_c, block_h, *names)
    constants = {"BLOCK_S": block_s, "BLOCK_C": block_c, "BLOCK_H": block_h, "EXACT": exact_gelu}
    if form == "tma":
        fn = token_kernel._token_mixing_tma_kernel
    else:
        fn = token_kernel._token_mixing_kernel
        constants["CHANNEL_ROWS"] = form == "channels"
    signature |= dict.fromkeys(constants, "constexpr")
    kernel = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constants),
                            target=GPUTarget("cuda", arch, 32),
                            options={"num_warps": warps, "num_stages": stages})
    ptx = kernel.asm["ptx"]
    report = assemble(ptx, arch_name(arch))
    return report | {"shared_bytes": kernel.metadata.shared,
                     "instructions": {name: ptx.count(name) for name in INSTRUCTIONS}}


def arch_name(arch: int) -> str:
    """ptxas's name for compute capability ``arch`` (90 -> ``sm_90a``, Hopper's full set
    with ``wgmma``; 80 -> ``sm_80``)."""
    return f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"


def assemble(ptx: str, arch: str) -> dict[str, int]:
    """``ptx`` assembled by Triton's ptxas for ``arch`` (e.g. ``sm_90a``): registers per
    thread and spill stores and loads in bytes per thread, as ``ptxas -v`` reports them."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "kernel.ptx")
        with open(source, "w") as f:
            f.write(ptx)
        done = subprocess.run([ptxas_path(), f"-arch={arch}", "-v", source, "-o",
                               os.path.join(tmp, "kernel.cubin")], capture_output=True,
                              text=True)
    text = done.stdout + done.stderr
    if done.returncode:
        raise RuntimeError(f"ptxas failed for {arch}: {text.strip()[-2000:]}")
    return parse_ptxas(text)


def parse_ptxas(text: str) -> dict[str, int]:
    """Registers and spill bytes from ``ptxas -v`` output (one kernel)."""
    registers = re.search(r"Used (\d+) registers", text)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    if registers is None or spills is None:
        raise ValueError(f"no register or spill line in ptxas output: {text.strip()[-500:]}")
    return {"registers": int(registers.group(1)), "spill_stores": int(spills.group(1)),
            "spill_loads": int(spills.group(2))}


def ptxas_version() -> str:
    """The bundled ptxas's release line, e.g. ``Cuda compilation tools, release 12.8, ...``."""
    out = subprocess.run([ptxas_path(), "--version"], capture_output=True, text=True).stdout
    return next((line for line in out.splitlines() if "release" in line), out.strip())
