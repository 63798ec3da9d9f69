import os
import random

import cv2
import numpy as np
import paddle
import pytest

from ppcls.data import ShardedEvalBatchSampler, build_dataloader
from ppcls.data.dataset import Cifar10, Cifar100, ImageNetDataset, ImageFolderDataset
from datasets import write_cifar_archive
from ppcls.data.preprocess import OPS, build_batch_ops, create_operators
from ppcls.data.preprocess.ops import DecodeError
from ppcls.utils.errors import ConfigError


def seeded(seed=0):
    random.seed(seed)
    np.random.seed(seed)


def img(h=40, w=60, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3)).astype(np.uint8)


def encode(a, ext=".png"):
    ok, buf = cv2.imencode(ext, a)
    assert ok
    return buf.tobytes()


# -- per-image ops ----------------------------------------------------------------------------
def test_decode_modes(tmp_path):
    dec = OPS["DecodeImage"](to_rgb=True)
    rgb = img()
    out = dec(encode(rgb[:, :, ::-1]))  # cv2 writes BGR
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8 and np.array_equal(out, rgb)
    gray = rgb[:, :, 0]
    assert dec(encode(gray)).shape == (40, 60, 3)
    rgba = np.dstack([rgb, np.full((40, 60), 128, np.uint8)])
    assert dec(encode(rgba)).shape == (40, 60, 3)
    deep = (rgb.astype(np.uint16) * 257)
    out16 = dec(encode(deep))
    assert out16.dtype == np.uint8 and out16.shape == (40, 60, 3)
    from PIL import Image
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    out = dec((tmp_path / "cmyk.jpg").read_bytes())
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    with pytest.raises(DecodeError):
        dec(b"")
    with pytest.raises(DecodeError):
        dec(b"definitely not an image")
    assert OPS["DecodeImage"](channel_first=True)(encode(rgb)).shape == (3, 40, 60)


def test_rand_crop_shape_determinism_and_interpolations():
    op = OPS["RandCropImage"](size=24, interpolation="bicubic")
    seeded(3)
    a = op(img())
    seeded(3)
    b = op(img())
    assert a.shape == (24, 24, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert OPS["RandCropImage"](size=[20, 10], interpolation=2)(img()).shape == (10, 20, 3)
    # a crop never leaves the image, even for extreme aspect ratios and tiny images
    seeded(0)
    tiny = OPS["RandCropImage"](size=8, ratio=[0.1, 10.0])
    for _ in range(50):
        assert tiny(img(5, 3)).shape == (8, 8, 3)
    with pytest.raises(ConfigError, match="interpolation"):
        OPS["RandCropImage"](size=8, interpolation="bicubik")


def test_flip_resize_crop_pad():
    x = img()
    seeded(1)
    flips = [OPS["RandFlipImage"](flip_code=1)(x) for _ in range(20)]
    assert any(np.array_equal(f, x[:, ::-1]) for f in flips) and any(np.array_equal(f, x) for f in flips)
    r = OPS["ResizeImage"](resize_short=20)(x)
    assert r.shape == (20, 30, 3)
    assert OPS["ResizeImage"](resize_short=256)(img(375, 500)).shape == (256, 341, 3)  # round(500*256/375)=341
    assert OPS["ResizeImage"](size=[30, 10])(x).shape == (10, 30, 3)
    with pytest.raises(ConfigError):
        OPS["ResizeImage"](size=3, resize_short=3)
    c = OPS["CropImage"](size=20)(x)
    assert np.array_equal(c, x[10:30, 20:40])
    with pytest.raises(DecodeError):
        OPS["CropImage"](size=100)(x)
    seeded(0)
    p = OPS["PadRandCropImage"](size=32, padding=4)(img(32, 32))
    assert p.shape == (32, 32, 3)
    seeded(0)
    p0 = OPS["PadRandCropImage"](size=32, padding=0)(img(32, 32))
    assert np.array_equal(p0, img(32, 32))


def test_normalize_and_chw():
    x = img(4, 5)
    n = OPS["NormalizeImage"](scale="1.0/255.0", mean=[0.5, 0.4, 0.3], std=[0.2, 0.3, 0.4], order="")
    out = n(x)
    ref = (x.astype(np.float64) / 255.0 - [0.5, 0.4, 0.3]) / [0.2, 0.3, 0.4]
    assert out.dtype == np.float32 and out.shape == (4, 5, 3)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    chw = OPS["NormalizeImage"](scale=1 / 255.0, mean=[0.5, 0.4, 0.3], std=[0.2, 0.3, 0.4], order="chw")(x)
    np.testing.assert_allclose(chw, ref.transpose(2, 0, 1), rtol=1e-5, atol=1e-5)
    assert OPS["ToCHWImage"]()(x).shape == (3, 4, 5)
    with pytest.raises(ConfigError, match="scale"):
        OPS["NormalizeImage"](scale="1.0/zero")


# -- batch ops --------------------------------------------------------------------------------
def test_mixup_cutmix_opsampler():
    paddle.seed(0)
    np.random.seed(0)
    images = paddle.to_tensor(np.random.rand(6, 3, 8, 8).astype("float32"))
    labels = paddle.to_tensor(np.array([0, 1, 2, 0, 1, 2]), dtype="int64")
    onehot = np.eye(3, dtype=np.float32)[labels.numpy()]
    for seed in range(4):
        # mixup: images and targets mixed with the same lambda and the same pairing
        np.random.seed(seed)
        x, t = build_batch_ops([{"MixupOperator": {"alpha": 0.4}}], class_num=3)(images, labels, epoch=1)
        np.random.seed(seed)
        lam, perm = np.random.beta(0.4, 0.4), np.random.permutation(6)
        assert x.shape == [6, 3, 8, 8] and t.shape == [6, 3]
        np.testing.assert_allclose(x.numpy(), lam * images.numpy() + (1 - lam) * images.numpy()[perm], rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(t.numpy(), lam * onehot + (1 - lam) * onehot[perm], rtol=1e-5, atol=1e-6)
        # cutmix: a box of the paired image pasted in; the targets weighted by the box's share of the area
        np.random.seed(seed)
        x, t = build_batch_ops([{"CutmixOperator": {"alpha": 1.0}}], class_num=3)(images, labels, epoch=1)
        np.random.seed(seed)
        lam, perm = np.random.beta(1.0, 1.0), np.random.permutation(6)
        cx, cy, cut = np.random.randint(8), np.random.randint(8), np.sqrt(1 - lam)
        half_w, half_h = int(8 * cut) // 2, int(8 * cut) // 2
        x1, x2, y1, y2 = max(cx - half_w, 0), min(cx + half_w, 8), max(cy - half_h, 0), min(cy + half_h, 8)
        ref = images.numpy().copy()
        if x2 > x1 and y2 > y1:
            ref[:, :, y1:y2, x1:x2] = images.numpy()[perm][:, :, y1:y2, x1:x2]
            area = (x2 - x1) * (y2 - y1) / 64.0
        else:
            area = 0.0
        np.testing.assert_array_equal(x.numpy(), ref)
        np.testing.assert_allclose(t.numpy(), (1 - area) * onehot + area * onehot[perm], rtol=1e-5, atol=1e-6)
    # stop_epoch: off after that epoch (pure one-hot targets, untouched images)
    ops = build_batch_ops([{"MixupOperator": {"alpha": 1.0, "stop_epoch": 2}}], 3)
    x, t = ops(images, labels, epoch=3)
    assert np.array_equal(x.numpy(), images.numpy()) and np.array_equal(t.numpy().argmax(1), labels.numpy())
    # OpSampler: one draw picks the op by its probability (here mixup below 0.3, cutmix below 0.8, none above),
    # then that op draws as it does alone
    ops = build_batch_ops([{"OpSampler": {"MixupOperator": {"alpha": 0.2, "prob": 0.3},
                                          "CutmixOperator": {"alpha": 1.0, "prob": 0.5}}}], 3)
    picked = set()
    for seed in range(12):
        np.random.seed(seed)
        x, t = ops(images, labels)
        np.random.seed(seed)
        r = np.random.rand()
        name = "MixupOperator" if r < 0.3 else "CutmixOperator" if r < 0.8 else None
        picked.add(name)
        if name is None:
            np.testing.assert_array_equal(x.numpy(), images.numpy())
            np.testing.assert_array_equal(t.numpy(), onehot)
            continue
        state = np.random.get_state()
        np.random.seed(0)
        alone = build_batch_ops([{name: {"alpha": 0.2 if name == "MixupOperator" else 1.0}}], 3)
        np.random.set_state(state)
        x_ref, t_ref = alone(images, labels)
        np.testing.assert_allclose(x.numpy(), x_ref.numpy(), rtol=1e-6)
        np.testing.assert_allclose(t.numpy(), t_ref.numpy(), rtol=1e-6)
    assert picked == {"MixupOperator", "CutmixOperator", None}
    with pytest.raises(ConfigError):
        build_batch_ops([{"MixupOperator": {"alpha": 0.0}}], 3)


# -- datasets ---------------------------------------------------------------------------------
def _list_dataset(tmp_path, lines, files):
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(lines) + "\n")
    return str(root), str(lst)


def norm_ops():
    return [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 8}},
            {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0, 0, 0], "std": [1, 1, 1], "order": ""}}]


def test_file_list_parsing_and_errors(tmp_path):
    good = encode(img(10, 10))
    root, lst = _list_dataset(tmp_path, ["a b.png 1", "", "# comment", "c.png 0"], {"a b.png": good, "c.png": good})
    ds = ImageNetDataset(root, lst, norm_ops(), class_num=2)
    assert len(ds) == 2 and ds.labels == [1, 0]
    x, y = ds[0]
    assert x.shape == (3, 8, 8) and x.dtype == np.float32 and y == 1
    root, lst = _list_dataset(tmp_path, ["c.png 0", "c.png"], {"c.png": good})
    with pytest.raises(ConfigError, match=r"list.txt:2: expected 'path label'"):
        ImageNetDataset(root, lst, norm_ops())
    root, lst = _list_dataset(tmp_path, ["c.png zero"], {"c.png": good})
    with pytest.raises(ConfigError, match=r"list.txt:1: label 'zero' is not an integer"):
        ImageNetDataset(root, lst, norm_ops())
    root, lst = _list_dataset(tmp_path, ["c.png 5"], {"c.png": good})
    with pytest.raises(ConfigError, match=r"list.txt:1: label 5 outside 0..2"):
        ImageNetDataset(root, lst, norm_ops(), class_num=3)


def test_bad_images_are_skipped_counted_and_reported(tmp_path, caplog):
    good = encode(img(10, 10))
    root, lst = _list_dataset(tmp_path, ["ok.png 0", "broken.png 1", "missing.png 1", "empty.png 0", "ok2.png 1"],
                              {"ok.png": good, "broken.png": b"garbage", "empty.png": b"", "ok2.png": good})
    ds = ImageNetDataset(root, lst, norm_ops())
    seen = [ds[i] for i in range(len(ds))]
    assert all(s[0].shape == (3, 8, 8) for s in seen)
    assert ds.bad_count == 6  # 3 + 2 + 1: each visit of a bad file is counted
    strict = ImageNetDataset(root, lst, norm_ops(), skip_bad_images=False)
    with pytest.raises(ConfigError, match="unreadable image .*broken.png"):
        strict[1]
    root, lst = _list_dataset(tmp_path, ["b1.png 0", "b2.png 0"], {"b1.png": b"x", "b2.png": b"y"})
    with pytest.raises(ConfigError, match="consecutive unreadable images"):
        ImageNetDataset(root, lst, norm_ops())[0]


def test_image_folder(tmp_path):
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(2):
            cv2.imwrite(str(tmp_path / c / f"{i}.jpg"), img(12, 12))
    ds = ImageFolderDataset(str(tmp_path), norm_ops())
    assert ds.classes == ["cat", "dog"] and ds.labels == [0, 0, 1, 1]


def test_cifar_archive_and_folder(tmp_path):
    rng = np.random.RandomState(0)
    imgs = rng.randint(0, 256, (10, 32, 32, 3)).astype(np.uint8)
    labels = list(range(10))
    path = write_cifar_archive(str(tmp_path / "cifar-10-python.tar.gz"), imgs, labels,
                               test_images=imgs[:4], test_labels=labels[:4])
    ops = [{"NormalizeImage": {"scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1], "order": ""}}]
    train = Cifar10(path, "train", ops)
    test = Cifar10(path, "test", ops)
    assert len(train) == 10 and len(test) == 4
    x, y = train[3]
    assert y == 3 and np.array_equal(x, imgs[3].transpose(2, 0, 1).astype(np.float32))
    import tarfile
    with tarfile.open(path) as t:
        t.extractall(tmp_path / "extracted")
    assert len(Cifar10(str(tmp_path / "extracted"), "train", ops)) == 10
    p100 = write_cifar_archive(str(tmp_path / "c100.tar.gz"), imgs, labels, kind="cifar100")
    assert len(Cifar100(p100, "test", ops)) == 10
    with pytest.raises(ConfigError, match="lacks"):
        Cifar10(p100, "train", ops)
    (tmp_path / "fake.tar.gz").write_bytes(b"not an archive at all")
    with pytest.raises(ConfigError, match="not a CIFAR tar archive"):
        Cifar10(str(tmp_path / "fake.tar.gz"), "train", ops)


def test_cifar_pickle_cannot_run_code(tmp_path):
    import io
    import pickle
    import tarfile

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))
    payload = pickle.dumps({b"data": Evil(), b"labels": [0]})
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(ConfigError, match="refusing to load posix.system|refusing to load os.system"):
        Cifar10(str(path), "train", [])
    assert not (tmp_path / "pwned").exists()


def test_sharded_eval_sampler_counts_each_sample_once():
    data = list(range(10))
    seen = []
    for rank in range(3):
        for batch in ShardedEvalBatchSampler(data, 2, 3, rank):
            seen.extend(batch)
    assert sorted(seen) == data


def test_loader_with_workers_is_repeatable(tmp_path):
    from engine_utils import tiny_config
    from ppcls.schema import get_config
    path, _ = tiny_config(tmp_path)
    cfg = get_config(path)
    section = cfg["DataLoader"]["Train"]
    section["loader"] = {"num_workers": 2, "use_shared_memory": True}
    section["sampler"]["shuffle"] = False

    def first_batch():
        loader, dataset, _ = build_dataloader(section, "Train", 3, seed=11)
        dataset.set_epoch(1)
        return next(iter(loader))[0].numpy()
    a, b = first_batch(), first_batch()
    assert a.shape == (12, 3, 32, 32) and np.array_equal(a, b)
    section["loader"] = {"num_workers": 0}
    assert np.array_equal(first_batch(), a)  # the same augmentations without workers


def test_standalone_batch_op_prob_mixes_that_share_of_the_batches():
    """MixupOperator outside OpSampler with prob: p mixes about p of the batches; prob 1 (the default)
    mixes every one and draws nothing more, so the random streams of runs without prob are unchanged."""
    from ppcls.data.preprocess.batch_ops import build_batch_ops
    from ppcls.utils.errors import ConfigError
    images = paddle.to_tensor(np.random.RandomState(0).rand(4, 3, 8, 8).astype("float32"))
    labels = paddle.to_tensor(np.array([0, 1, 2, 3]))
    op = build_batch_ops([{"MixupOperator": {"alpha": 1.0, "prob": 0.3}}], class_num=4)
    np.random.seed(0)
    mixed = sum(not np.array_equal(op(images, labels)[0].numpy(), images.numpy()) for _ in range(400))
    assert 90 <= mixed <= 150, mixed  # 120 expected
    always = build_batch_ops([{"MixupOperator": {"alpha": 1.0}}], class_num=4)
    np.random.seed(1)
    always(images, labels)
    after = np.random.rand()
    np.random.seed(1)
    np.random.beta(1.0, 1.0), np.random.permutation(4)
    assert np.random.rand() == after
    with pytest.raises(ConfigError, match=r"MixupOperator.prob: must be in \[0, 1\], got 1.5"):
        build_batch_ops([{"MixupOperator": {"prob": 1.5}}], class_num=4)
    with pytest.raises(ConfigError) as e:
        build_batch_ops([{"MixupOperator": {"zzz": 1.0}}], class_num=4)
    assert str(e.value).count("class_num") == 1, str(e.value)
