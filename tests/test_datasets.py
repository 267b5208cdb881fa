import pickle

import h5py
import numpy as np
import pytest
import torch
from conftest import need, run
from torch.utils.data import DataLoader

from datasets import PatchDataset, augment_pairs, eval_pairs


def make_patches(path, count=8, size=12):
    hr = np.random.default_rng(0).integers(0, 256, (count, size, size), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f["lr"], f["hr"] = hr, hr  # identical, so a mismatched augmentation would show
        f.attrs["scale"] = 3
    return hr


def test_patches_are_unit_range_tensors_and_the_file_opens_lazily(tmp_path):
    hr = make_patches(tmp_path / "p.h5")
    dataset = PatchDataset(tmp_path / "p.h5")
    assert dataset.file is None and len(dataset) == 8
    pickle.dumps(dataset)  # what DataLoader workers receive: no open h5py handle inside
    lr_t, hr_t = dataset[3]
    assert lr_t.shape == (1, 12, 12) and lr_t.dtype == torch.float32
    torch.testing.assert_close(hr_t[0], torch.from_numpy(hr[3]).float() / 255)
    batches = list(DataLoader(dataset, batch_size=4, num_workers=2))
    assert len(batches) == 2 and batches[0][0].shape == (4, 1, 12, 12)


def test_in_memory_batches_equal_patches_read_from_disk(tmp_path):
    make_patches(tmp_path / "p.h5")
    on_disk, in_memory = PatchDataset(tmp_path / "p.h5"), PatchDataset(tmp_path / "p.h5", in_memory=True)
    order = [5, 2, 7, 0]
    for a, b in zip(DataLoader(on_disk, batch_size=4, sampler=order), DataLoader(in_memory, batch_size=4, sampler=order)):
        assert a[0].shape == (4, 1, 12, 12) and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(in_memory[3][1], on_disk[3][1])


def test_augmentation_transforms_lr_and_hr_alike_and_covers_all_eight():
    hr = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 1, 12, 12))).float()
    generator = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(50):
        lr_aug, hr_aug = augment_pairs(hr.repeat(4, 1, 1, 1), hr.repeat(4, 1, 1, 1), generator)
        assert torch.equal(lr_aug, hr_aug) and lr_aug.shape == (4, 1, 12, 12)
        seen.update(x.numpy().tobytes() for x in hr_aug)
    image = hr[0].numpy()
    variants = {np.ascontiguousarray(np.rot90(im, k, (1, 2))).tobytes() for im in (image, image[..., ::-1]) for k in range(4)}
    assert seen == variants
    again = augment_pairs(hr.repeat(4, 1, 1, 1), hr.repeat(4, 1, 1, 1), torch.Generator().manual_seed(0))
    first = augment_pairs(hr.repeat(4, 1, 1, 1), hr.repeat(4, 1, 1, 1), torch.Generator().manual_seed(0))
    assert torch.equal(again[0], first[0])  # replayable from the seed


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
