import itertools

import pytest
import torch

from dense.data import SeededDataset, StepBatchSampler


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_batches_depend_only_on_the_step():
    full = take(StepBatchSampler(10, 3, seed=1), 8)
    resumed = take(StepBatchSampler(10, 3, seed=1, start_step=5), 3)
    assert resumed == full[5:]
    # each epoch visits every index once
    stream = [index for batch in full for index, _ in batch]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert take(StepBatchSampler(10, 3, seed=2), 8) != full


def test_ranks_split_each_global_batch():
    single = take(StepBatchSampler(12, 4, seed=0), 3)
    ranks = [take(StepBatchSampler(12, 2, seed=0, rank=r, world_size=2), 3) for r in range(2)]
    for step in range(3):
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(single[step])
        assert not set(ranks[0][step]) & set(ranks[1][step])


def test_seeded_items_are_reproducible_and_leave_global_rng_alone():
    class Noise(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return torch.rand(2)

    dataset = SeededDataset(Noise())
    torch.manual_seed(0)
    before = torch.get_rng_state()
    assert torch.equal(dataset[(1, 99)], dataset[(1, 99)])
    assert not torch.equal(dataset[(1, 99)], dataset[(1, 98)])
    assert torch.equal(torch.get_rng_state(), before)


def test_the_sample_cache_makes_each_sample_once_and_reads_it_back(tmp_path):
    from datasets.synthetic import SyntheticConfig, SyntheticRooms
    from dense.cache import CachedDataset, cache_folder

    options = SyntheticConfig(height=16, width=24, neighbours=True, train_length=4)
    rooms = SyntheticRooms("train", options)
    folder = cache_folder(str(tmp_path / "cache"), "synthetic", "train", options)
    cached = CachedDataset(rooms, folder)
    made = cached[2]
    assert (folder / "2.pt").is_file() and (folder / "dataset.json").is_file()
    assert cached.class_names == rooms.class_names and len(cached) == 4

    class Broken:  # a later run reads the file and never asks the dataset
        def __getitem__(self, index):
            raise AssertionError("made again")

    again = CachedDataset(Broken(), folder)[2]
    assert made.keys() == again.keys() and all(torch.equal(made[k], again[k]) for k in made)
    (folder / "2.pt").write_bytes(b"damaged")
    assert torch.equal(cached[2]["image"], made["image"])  # made again, file repaired
    assert torch.equal(CachedDataset(Broken(), folder)[2]["depth"], made["depth"])
    other = SyntheticConfig(height=16, width=24, neighbours=False, train_length=4)
    assert cache_folder(str(tmp_path / "cache"), "synthetic", "train", other) != folder


def test_training_from_the_cache_equals_training_without_it(tiny, tmp_path):
    from dense.trainer import train

    plain = train(tiny("run.name=plain")).metrics
    cache = f"data.cache='{(tmp_path / 'cache').as_posix()}'"
    first = train(tiny("run.name=first", cache)).metrics  # fills the cache
    second = train(tiny("run.name=second", cache)).metrics  # reads it
    assert plain == first == second
    assert len(list((tmp_path / "cache").glob("synthetic-train-*/*.pt"))) == 6 * 4


def test_training_from_memory_equals_training_without_it_and_makes_each_sample_once(
    tiny, monkeypatch
):
    from datasets.synthetic import SyntheticRooms
    from dense.trainer import train

    plain = train(tiny("run.name=plain", "data.options.train_length=8")).metrics
    made = []
    render = SyntheticRooms.__getitem__
    monkeypatch.setattr(SyntheticRooms, "__getitem__", lambda s, i: made.append(i) or render(s, i))
    kept = train(tiny("run.name=kept", "data.options.train_length=8", "data.cache='memory'"))
    assert kept.metrics == plain
    assert sorted(made) == sorted([*range(8), *range(8)])  # 8 training and 8 validation rooms


def test_a_cache_that_cannot_be_a_folder_is_one_clear_error(tiny, tmp_path):
    from dense.errors import DenseError
    from dense.trainer import train

    (tmp_path / "file").write_text("keep me")
    with pytest.raises(DenseError, match="data.cache"):
        train(tiny(f"data.cache='{(tmp_path / 'file').as_posix()}'"))
    assert (tmp_path / "file").read_text() == "keep me"
