"""Checkpoint I/O: official .npz layout, timm state dicts, resolution change, downloads."""

from __future__ import annotations

import http.server
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mixer_lib import VARIANTS, create_model, get_config, pretrained
from mixer_lib.checkpoints import (
    CHECKPOINTS,
    CheckpointError,
    checkpoint_info,
    download,
    load_npz,
    load_timm_state_dict,
    read_npz,
    save_npz,
)
from mixer_lib.download import CheckpointDownloadError, sha256_file
from mixer_lib.resolution import tile_token_order
from tests.conftest import import_or_skip

SMALL = dict(img_size=64, num_classes=7)


def randomise(model: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model


@pytest.fixture
def s32_npz(tmp_path) -> Path:
    return save_npz(randomise(create_model("Mixer-S/32", **SMALL)), tmp_path / "s32.npz")


def test_npz_has_official_keys_and_layout(tmp_path):
    model = randomise(create_model("Mixer-S/32", **SMALL))
    arrays = read_npz(save_npz(model, tmp_path / "m.npz"))
    assert arrays["stem/kernel"].shape == (32, 32, 3, 512)  # HWIO
    assert arrays["MixerBlock_0/token_mixing/Dense_0/kernel"].shape == (4, 256)  # (S, D_S)
    assert arrays["MixerBlock_7/channel_mixing/Dense_1/kernel"].shape == (2048, 512)
    assert arrays["MixerBlock_3/LayerNorm_1/scale"].shape == (512,)
    assert arrays["pre_head_layer_norm/bias"].shape == (512,)
    assert arrays["head/kernel"].shape == (512, 7)
    np.testing.assert_array_equal(arrays["head/kernel"], model.head.weight.detach().numpy().T)
    np.testing.assert_array_equal(arrays["stem/kernel"][2, 5, 1, 9],
                                  model.stem.weight[9, 1, 2, 5].item())
    assert len(arrays) == 4 + 8 * 12 + 2
    # every Dense kernel is the torch weight transposed, (in, out); scales and biases as is
    block = model.blocks[3]
    pairs = {
        "MixerBlock_3/token_mixing/Dense_0/kernel": block.mlp_tokens.fc1.weight.T,
        "MixerBlock_3/token_mixing/Dense_1/kernel": block.mlp_tokens.fc2.weight.T,
        "MixerBlock_3/token_mixing/Dense_0/bias": block.mlp_tokens.fc1.bias,
        "MixerBlock_3/channel_mixing/Dense_0/kernel": block.mlp_channels.fc1.weight.T,
        "MixerBlock_3/channel_mixing/Dense_1/kernel": block.mlp_channels.fc2.weight.T,
        "MixerBlock_3/LayerNorm_0/scale": block.norm1.weight,
        "MixerBlock_3/LayerNorm_1/bias": block.norm2.bias,
        "pre_head_layer_norm/scale": model.norm.weight,
        "head/bias": model.head.bias,
    }
    for key, tensor in pairs.items():
        np.testing.assert_array_equal(arrays[key], tensor.detach().numpy(), err_msg=key)


def test_load_reads_a_hand_written_official_file(tmp_path):
    """A file written here key by key in the official layout (not by ``save_npz``) loads into
    the right tensors: a transpose or a swapped pair made the same way in saving and loading
    would pass a round trip, not this."""
    model = create_model("Mixer-S/32", **SMALL)
    rng = np.random.default_rng(0)
    arrays = {}
    for key, value in read_npz(save_npz(model, tmp_path / "shape.npz")).items():
        arrays[key] = rng.normal(size=value.shape).astype(np.float32)
    np.savez(tmp_path / "hand.npz", **arrays)
    load_npz(model, tmp_path / "hand.npz")
    b = model.blocks[5]
    checks = {
        "stem/kernel": model.stem.weight.permute(2, 3, 1, 0),  # OIHW -> HWIO
        "MixerBlock_5/token_mixing/Dense_0/kernel": b.mlp_tokens.fc1.weight.T,
        "MixerBlock_5/token_mixing/Dense_1/bias": b.mlp_tokens.fc2.bias,
        "MixerBlock_5/channel_mixing/Dense_0/kernel": b.mlp_channels.fc1.weight.T,
        "MixerBlock_5/channel_mixing/Dense_1/kernel": b.mlp_channels.fc2.weight.T,
        "MixerBlock_5/LayerNorm_0/scale": b.norm1.weight,
        "MixerBlock_5/LayerNorm_1/scale": b.norm2.weight,
        "pre_head_layer_norm/bias": model.norm.bias,
        "head/kernel": model.head.weight.T,
    }
    for key, tensor in checks.items():
        np.testing.assert_array_equal(tensor.detach().numpy(), arrays[key], err_msg=key)


def test_save_load_round_trip_is_exact(s32_npz):
    a = randomise(create_model("Mixer-S/32", **SMALL))
    path = save_npz(a, s32_npz)
    b = create_model("Mixer-S/32", **SMALL)
    report = load_npz(b, path)
    assert not report.reinitialised and not report.resized
    assert len(report.loaded) == len(a.state_dict())
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(a.eval()(x), b.eval()(x))


def test_timm_state_dict_gives_same_logits():
    timm = import_or_skip("timm", "pip install -e '.[test]'")
    ref = randomise(timm.create_model("mixer_b16_224", num_classes=10)).eval()
    ours = create_model("Mixer-B/16", num_classes=10, gelu="exact").eval()
    report = load_timm_state_dict(ours, ref)
    assert len(report.loaded) == len(ref.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)


def test_fine_tuning_head_is_replaced_and_reported(s32_npz):
    model = create_model("Mixer-S/32", img_size=64, num_classes=100)
    report = load_npz(model, s32_npz)
    assert set(report.reinitialised) == {"head.weight", "head.bias"}
    assert "7 classes, model has 100" in report.reinitialised["head.weight"]
    assert model.head.weight.shape == (100, 512)
    assert torch.count_nonzero(model.head.weight) == 0
    src = read_npz(s32_npz)
    np.testing.assert_array_equal(model.norm.weight.detach().numpy(),
                                  src["pre_head_layer_norm/scale"])
    assert "re-initialised head.weight" in str(report)


# ------------------------------------------------------------------- resolution change


def test_tile_token_order():
    # 2x2 grid, factor 2 -> 4x4 grid; tile (0,1) holds row-major indices 2, 3, 6, 7
    order = tile_token_order(2, 2)
    assert order.tolist() == [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]


def test_block_diagonal_high_resolution_b16_224_to_448(tmp_path):
    """Paper Appendix C: B/16 at 224 px (14x14 grid) loads into a 448 px model (28x28 grid).

    Property: the block-diagonal initialisation makes the token-mixing MLP act on each of
    the four 14x14 tiles of the 28x28 grid independently with the pre-trained weights. Since
    the stem, LayerNorms and channel-mixing MLPs act per patch, an image made of 2x2 copies
    of a 224 px image then gives the 448 px model exactly the tokens of the 224 px model in
    each tile, hence the same pooled features and logits. Also checked: the token-mixing
    output for one tile does not depend on the other tiles (block structure).
    """
    low = randomise(create_model("Mixer-B/16", num_classes=10)).eval()
    path = save_npz(low, tmp_path / "b16.npz")
    high, report = pretrained("Mixer-B/16", path, img_size=448)  # built 4x as wide in D_S
    high.eval()
    assert "14x14 -> 28x28" in report.resized["blocks.*.mlp_tokens"]
    assert high.cfg.tokens_mlp_dim == 4 * 384 and high.cfg.num_classes == 10
    assert high.blocks[0].mlp_tokens.fc1.weight.shape == (1536, 784)
    img = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(high(img.repeat(1, 1, 2, 2)), low(img), rtol=1e-4,
                                   atol=1e-5)
        # independence of tiles: perturbing the bottom-right tile leaves tile (0, 0) unchanged
        tokens = torch.randn(1, 784, 768)
        changed = tokens.clone().view(1, 28, 28, 768)
        changed[:, 14:, 14:] += 1.0
        mix = high.blocks[0].mlp_tokens
        a, b = mix(tokens).view(1, 28, 28, 768), mix(changed.view(1, 784, 768)).view(1, 28, 28,
                                                                                  768)
        assert torch.equal(a[:, :14, :14], b[:, :14, :14])
        assert not torch.allclose(a[:, 14:, 14:], b[:, 14:, 14:])


def test_loading_never_rewrites_the_model(s32_npz):
    """App. C's wider model is built, not made by loading: load_npz into a model of the
    standard width for a larger grid refuses, names the width it needs and how to build it,
    and leaves the model as it was."""
    model = create_model("Mixer-S/32", num_classes=7, img_size=128)  # 2x2 -> 4x4 grid
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"D_S=256 must be 4 x 256 = 1024.*"
                                              r"pretrained\(variant, weights, img_size=128\)"):
        load_npz(model, s32_npz)
    assert model.cfg.tokens_mlp_dim == 256
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    wide = create_model("Mixer-S/32", num_classes=7, img_size=128, tokens_mlp_dim=1024)
    assert "2x2 -> 4x4" in load_npz(wide, s32_npz).resized["blocks.*.mlp_tokens"]


def test_unmappable_grid_is_a_clear_error(s32_npz):
    model = create_model("Mixer-S/32", num_classes=7, img_size=96)  # 2x2 -> 3x3 grid
    with pytest.raises(CheckpointError, match=r"cannot map the checkpoint's 2x2 patch grid.*"
                                              r"whole factor.*img_size = 64 x k"):
        load_npz(model, s32_npz)


# --------------------------------------------------------------------------- bad files


def test_checkpoint_of_another_variant_is_a_clear_error(s32_npz):
    with pytest.raises(CheckpointError, match=r"is Mixer-S/32 \(8 blocks.*but the model is "
                                              r"Mixer-B/32.*create_model\('Mixer-S/32'"):
        load_npz(create_model("Mixer-B/32", **SMALL), s32_npz)


def test_truncated_npz_is_a_clear_error(s32_npz, tmp_path):
    data = s32_npz.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt.*download it again"):
        load_npz(create_model("Mixer-S/32", **SMALL), bad)


def test_corrupt_npz_payload_is_a_clear_error(s32_npz, tmp_path):
    data = bytearray(s32_npz.read_bytes())
    data[len(data) // 3: len(data) // 3 + 64] = b"\x00" * 64  # flip bytes inside an array
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_npz(create_model("Mixer-S/32", **SMALL), bad)


def _rewrite(src: Path, dst: Path, drop: str | None = None, add: str | None = None) -> Path:
    arrays = read_npz(src)
    if drop:
        del arrays[drop]
    if add:
        arrays[add] = np.zeros(3, np.float32)
    np.savez(dst, **arrays)
    return dst


def test_unknown_and_missing_keys_are_clear_errors(s32_npz, tmp_path):
    model = create_model("Mixer-S/32", **SMALL)
    extra = _rewrite(s32_npz, tmp_path / "extra.npz", add="MixerBlock_0/attention/kernel")
    with pytest.raises(CheckpointError, match=r"unknown keys \['MixerBlock_0/attention/kernel'\]"):
        load_npz(model, extra)
    missing = _rewrite(s32_npz, tmp_path / "missing.npz", drop="MixerBlock_2/LayerNorm_1/bias")
    with pytest.raises(CheckpointError, match=r"missing keys \['MixerBlock_2/LayerNorm_1/bias'\]"):
        load_npz(model, missing)
    with pytest.raises(CheckpointError, match="not an MLP-Mixer checkpoint"):
        np.savez(tmp_path / "vit.npz", **{"embedding/kernel": np.zeros((16, 16, 3, 8))})
        load_npz(model, tmp_path / "vit.npz")


def test_missing_file_and_unknown_weights_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist.*download"):
        load_npz(create_model("Mixer-S/32", **SMALL), tmp_path / "nope.npz")
    with pytest.raises(CheckpointError, match="no released checkpoint for Mixer-H/14"):
        checkpoint_info("Mixer-H/14", "imagenet21k")


def test_catalogue():
    info = checkpoint_info("Mixer-B/16", "imagenet21k")
    assert info.url == "https://storage.googleapis.com/mixer_models/imagenet21k/Mixer-B_16.npz"
    assert info.num_classes == 21843
    assert {c.weights for c in CHECKPOINTS.values()} == {"imagenet21k", "imagenet1k", "sam",
                                                         "gsam"}
    # every released file names a Table 1 variant by its registry name and its file
    for c in CHECKPOINTS.values():
        assert c.variant in VARIANTS, c.variant
        assert get_config(c.variant).name == c.variant
        assert c.url.endswith(f"/{c.weights}/" + c.variant.replace("/", "_") + ".npz")


# ----------------------------------------------------------------------------- download


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from a folder with HTTP Range support; can cut a response short."""

    cut_after: int | None = None
    seen_ranges: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = Path(self.directory) / self.path.lstrip("/")
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        type(self).seen_ranges.append(rng)
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.cut_after is not None:
            body = body[: self.cut_after]
            type(self).cut_after = None
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()

    def handler(*a, **kw):
        return _RangeHandler(*a, directory=str(served), **kw)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _RangeHandler.seen_ranges = []
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_resumes_verifies_and_caches(server, s32_npz, tmp_path):
    served, base = server
    (served / "m.npz").write_bytes(s32_npz.read_bytes())
    digest = sha256_file(s32_npz)
    cache = tmp_path / "cache"
    _RangeHandler.cut_after = 1000  # first attempt dies after 1000 bytes
    with pytest.raises(CheckpointDownloadError, match="call download\\(\\) again to resume"):
        download("m", cache, url=f"{base}/m.npz", sha256=digest, progress=False)
    assert (cache / "m.npz.part").stat().st_size == 1000 and not (cache / "m.npz").exists()
    path = download("m", cache, url=f"{base}/m.npz", sha256=digest, progress=False)
    assert _RangeHandler.seen_ranges[-1] == "bytes=1000-"  # resumed, not restarted
    assert sha256_file(path) == digest and not (cache / "m.npz.part").exists()
    load_npz(create_model("Mixer-S/32", **SMALL), path)
    n = len(_RangeHandler.seen_ranges)
    assert download("m", cache, url=f"{base}/m.npz", sha256=digest, progress=False) == path
    assert len(_RangeHandler.seen_ranges) == n  # served from the cache


def test_download_checksum_mismatch_is_a_clear_error(server, s32_npz, tmp_path):
    served, base = server
    (served / "m.npz").write_bytes(s32_npz.read_bytes())
    with pytest.raises(CheckpointDownloadError, match="does not match its sha256"):
        download("m", tmp_path / "c", url=f"{base}/m.npz", sha256="0" * 64, progress=False)
    assert not (tmp_path / "c" / "m.npz").exists()  # never published under the final name


def test_download_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr("mixer_lib.checkpoints.BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MIXER_CACHE_DIR", str(tmp_path / "cache"))
    expected = tmp_path / "cache" / "imagenet21k_Mixer-B_16.npz"
    with pytest.raises(CheckpointDownloadError,
                       match=rf"could not download .*put it at {expected}"):
        download("imagenet21k/Mixer-B_16", progress=False)


def test_npz_is_a_zip_of_npy(s32_npz):
    with zipfile.ZipFile(s32_npz) as z:
        assert "stem/kernel.npy" in z.namelist()


def test_concurrent_downloads_end_with_one_verified_file(s32_npz, tmp_path):
    """Four processes download one checkpoint from a slow server into one cache at once (as
    torchrun's ranks or two runs sharing a cache do): one transfer, one verified file, no
    error, and every process gets its path."""
    import subprocess
    import sys
    import time

    payload = s32_npz.read_bytes()
    gets = []

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            gets.append(self.headers.get("Range"))
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            for i in range(0, len(payload), len(payload) // 20 + 1):
                self.wfile.write(payload[i:i + len(payload) // 20 + 1])
                time.sleep(0.05)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/m.npz"
    digest = sha256_file(s32_npz)
    code = ("import sys; from mixer_lib.checkpoints import download; "
            "print(download('m', sys.argv[1], url=sys.argv[2], sha256=sys.argv[3], "
            "progress=False))")
    try:
        procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "c"), url, digest],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        httpd.shutdown()
    assert [p.returncode for p in procs] == [0] * 4, [o[1][-1500:] for o in outs]
    assert {o[0].strip() for o in outs} == {str(tmp_path / "c" / "m.npz")}
    assert gets == [None]  # one transfer; the others reused its file
    assert sha256_file(tmp_path / "c" / "m.npz") == digest
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [".m.npz.lock", "m.npz"]


def test_download_without_file_locks_writes_a_file_of_its_own(server, s32_npz, tmp_path,
                                                              monkeypatch):
    """On a file system without locks (ENOLCK) the download goes on in a temporary file of
    its own, verified and renamed into place."""
    import errno

    import mixer_lib.filelock as filelock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(filelock.fcntl, "lockf", no_locks)
    served, base = server
    (served / "m.npz").write_bytes(s32_npz.read_bytes())
    path = download("m", tmp_path / "c", url=f"{base}/m.npz", sha256=sha256_file(s32_npz),
                    progress=False)
    assert sha256_file(path) == sha256_file(s32_npz)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [".m.npz.lock", "m.npz"]
