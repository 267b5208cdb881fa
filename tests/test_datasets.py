import pickle

import h5py
import numpy as np
import pytest
import torch
from conftest import need, run, write_patches
from torch.utils.data import DataLoader

from datasets import PatchDataset, augment_pairs, eval_pairs


def make_patches(path, count=8, size=12, channels=1):
    """LR and HR patches that differ (independent noise), so a swap of the two cannot pass unseen."""
    rng = np.random.default_rng(0)
    shape = (count, size, size) if channels == 1 else (count, channels, size, size)
    lr, hr = rng.integers(0, 128, shape, dtype=np.uint8), rng.integers(128, 256, shape, dtype=np.uint8)
    write_patches(path, lr, hr, color="y" if channels == 1 else "rgb")
    return lr, hr


def unit(patches):
    return torch.from_numpy(patches).float() / 255


def test_patches_are_unit_range_tensors_and_the_file_opens_lazily(tmp_path):
    lr, hr = make_patches(tmp_path / "p.h5")
    dataset = PatchDataset(tmp_path / "p.h5")
    assert dataset.file is None and len(dataset) == 8
    pickle.dumps(dataset)  # what DataLoader workers receive: no open h5py handle inside
    lr_t, hr_t = dataset[3]
    assert lr_t.shape == hr_t.shape == (1, 12, 12) and lr_t.dtype == hr_t.dtype == torch.float32
    torch.testing.assert_close(lr_t[0], unit(lr[3]), rtol=0, atol=0)  # (lr, hr), in that order
    torch.testing.assert_close(hr_t[0], unit(hr[3]), rtol=0, atol=0)
    batches = list(DataLoader(dataset, batch_size=4, num_workers=2))
    assert len(batches) == 2 and batches[0][0].shape == batches[0][1].shape == (4, 1, 12, 12)
    torch.testing.assert_close(batches[1][0][:, 0], unit(lr[4:]), rtol=0, atol=0)
    torch.testing.assert_close(batches[1][1][:, 0], unit(hr[4:]), rtol=0, atol=0)


def test_in_memory_batches_equal_patches_read_from_disk(tmp_path):
    lr, hr = make_patches(tmp_path / "p.h5")
    on_disk, in_memory = PatchDataset(tmp_path / "p.h5"), PatchDataset(tmp_path / "p.h5", in_memory=True)
    order = [5, 2, 7, 0]
    batches = list(zip(DataLoader(on_disk, batch_size=4, sampler=order), DataLoader(in_memory, batch_size=4, sampler=order)))
    assert len(batches) == 1
    for a, b in batches:
        assert a[0].shape == (4, 1, 12, 12) and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        torch.testing.assert_close(b[0][:, 0], unit(lr[order]), rtol=0, atol=0)
        torch.testing.assert_close(b[1][:, 0], unit(hr[order]), rtol=0, atol=0)
    assert torch.equal(in_memory[3][0], unit(lr[3])[None]) and torch.equal(in_memory[3][1], unit(hr[3])[None])


def test_colour_patches_keep_their_channel_axis(tmp_path):
    lr, hr = make_patches(tmp_path / "c.h5", channels=3)
    for dataset in (PatchDataset(tmp_path / "c.h5"), PatchDataset(tmp_path / "c.h5", in_memory=True)):
        (lr_b, hr_b), = DataLoader(dataset, batch_size=8)
        assert lr_b.shape == hr_b.shape == (8, 3, 12, 12)
        assert torch.equal(lr_b, unit(lr)) and torch.equal(hr_b, unit(hr))


TRANSFORMS = [(k, flip) for flip in (False, True) for k in range(4)]


def transformed(image, k, flip):
    """rot90 by k quarter turns over the last two axes, then a left-right flip: what augment_pairs applies."""
    out = np.rot90(image, k, (-2, -1))
    return np.ascontiguousarray(out[..., ::-1] if flip else out)


def test_augmentation_transforms_lr_and_hr_alike_and_covers_all_eight():
    """Each pair gets one of the 8 transforms, the same for its LR and HR (which differ, and differ between
    pairs, so a swap, a mix-up between pairs or a transform applied to one side alone shows)."""
    rng = np.random.default_rng(0)
    lr = torch.from_numpy(rng.integers(0, 128, (4, 1, 12, 12))).float()
    hr = torch.from_numpy(rng.integers(128, 256, (4, 1, 12, 12))).float()
    generator = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(50):
        lr_aug, hr_aug = augment_pairs(lr, hr, generator)
        assert lr_aug.shape == hr_aug.shape == (4, 1, 12, 12)
        for i in range(4):
            found = [t for t in TRANSFORMS if np.array_equal(hr_aug[i].numpy(), transformed(hr[i].numpy(), *t))]
            assert len(found) == 1, i  # HR i, transformed (random patches have no symmetry: one transform fits)
            np.testing.assert_array_equal(lr_aug[i].numpy(), transformed(lr[i].numpy(), *found[0]))
            seen.add(found[0])
    assert seen == set(TRANSFORMS)
    again = augment_pairs(lr, hr, torch.Generator().manual_seed(0))
    first = augment_pairs(lr, hr, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])  # replayable from the seed


def test_a_ranks_slice_of_a_batch_is_augmented_as_in_the_whole_batch():
    rng = np.random.default_rng(1)
    lr = torch.from_numpy(rng.integers(0, 128, (8, 1, 6, 6))).float()
    hr = torch.from_numpy(rng.integers(128, 256, (8, 1, 6, 6))).float()
    for seed in range(5):
        whole = augment_pairs(lr, hr, torch.Generator().manual_seed(seed))
        for start in (0, 4):
            part = augment_pairs(lr[start:start + 4], hr[start:start + 4], torch.Generator().manual_seed(seed),
                                 total=8, start=start)
            assert torch.equal(part[0], whole[0][start:start + 4]) and torch.equal(part[1], whole[1][start:start + 4])


def test_eval_file_images_come_in_numeric_order_as_name_hr_lr(tmp_path):
    """A preprocess.py --eval file's groups are named 0, 1, ..., 11: 10 and 11 come after 9, not after 1."""
    path = tmp_path / "e.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(scale=3, blur_sigma=0.0, mode="eval", color="y")
        for i in range(12):
            for group, side in (("hr", 24), ("lr", 8)):
                f.create_dataset(f"{group}/{i}", data=np.full((side, side), 20 * i + (group == "hr"), np.uint8))
                f[f"{group}/{i}"].attrs["name"] = f"image{i}"
    pairs = eval_pairs(path, 3)
    assert [name for name, _, _ in pairs] == [f"image{i}" for i in range(12)]
    for i, (_, hr, lr) in enumerate(pairs):
        assert hr.shape == (24, 24) and lr.shape == (8, 8)
        assert hr[0, 0] == 20 * i + 1 and lr[0, 0] == 20 * i


def test_eval_set_from_a_folder_equals_the_one_from_hdf5(data, tmp_path):
    folder = need(data / "Set5" / "x4")
    assert run("preprocess.py", "--images", folder, "--scale", 4, "--eval", "--output", tmp_path / "e.h5").returncode == 0
    from_folder, from_h5 = eval_pairs(folder, 4), eval_pairs(tmp_path / "e.h5", 4)
    assert [name for name, *_ in from_folder] == [name for name, *_ in from_h5] == [f"img_00{i}_SRF_4" for i in range(1, 6)]
    for (_, hr1, lr1), (_, hr2, lr2) in zip(from_folder, from_h5):
        np.testing.assert_array_equal(hr1, hr2)
        np.testing.assert_array_equal(lr1, lr2)
        assert hr1.dtype == lr1.dtype == np.uint8 and hr1.shape[0] == 4 * lr1.shape[0]
    with pytest.raises(ValueError, match="made with blur sigma 0, not 0.73"):  # its stored LR cannot be re-blurred
        eval_pairs(tmp_path / "e.h5", 4, blur_sigma=0.73)
