import itertools

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
