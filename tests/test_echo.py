"""Data echoing (``data.echo``): the echoed batch stream and the worker's sample memory."""

import itertools
from collections import Counter

import torch

from dense.cache import SampleMemory
from dense.data import StepBatchSampler
from dense.echo import ECHO_WINDOW_STEPS


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_echo_uses_each_new_item_k_times_never_twice_in_a_batch():
    echo, batch = 3, 4
    window = ECHO_WINDOW_STEPS * batch
    periods = 17  # period p holds min(p + 1, echo) windows
    items = sum(min(p + 1, echo) for p in range(periods)) * window
    batches = take(StepBatchSampler(1000, batch, seed=1, echo=echo), items // batch)
    stream = [item for b in batches for item in b]
    assert all(len({index for index, _ in b}) == batch for b in batches)
    fresh = [item for b in take(StepBatchSampler(1000, batch, seed=1), items) for item in b]
    new = fresh[: periods * window]  # the windows the periods have begun
    assert {index for index, _ in stream} == {index for index, _ in new}
    assert set(new) <= set(stream)  # first uses keep the item seeds of the stream without echo
    uses = Counter(index for index, _ in stream)
    seeds = {index: {seed for i, seed in stream if i == index} for index, _ in new}
    done = [index for index, _ in new[: (periods - echo + 1) * window]]  # every visit made
    assert all(uses[index] == echo and len(seeds[index]) == echo for index in done)
    assert all(uses[index] < echo for index, _ in new[len(done) :])


def test_echo_on_a_dataset_smaller_than_a_window_uses_every_sample_k_times():
    echo, batch = 2, 4
    window = ECHO_WINDOW_STEPS * batch  # 16 items: 5 rooms over three epochs and a bit
    steps = sum(min(p + 1, echo) for p in range(6)) * window // batch
    stream = [i for b in take(StepBatchSampler(5, batch, seed=0, echo=echo), steps) for i, _ in b]
    new = [i for b in take(StepBatchSampler(5, batch, seed=0), steps) for i, _ in b]
    # windows 0-4 used twice, window 5 (period 5's new one) once so far
    assert Counter(stream) == Counter(new[: 5 * window] * echo + new[5 * window : 6 * window])


def test_echoed_batches_depend_only_on_the_step_and_ranks_split_them():
    full = take(StepBatchSampler(100, 4, seed=2, echo=4), 60)
    assert take(StepBatchSampler(100, 4, seed=2, echo=4, start_step=37), 20) == full[37:57]
    ranks = [
        take(StepBatchSampler(100, 2, seed=2, rank=r, world_size=2, echo=4), 60) for r in (0, 1)
    ]
    assert all(sorted(ranks[0][s] + ranks[1][s]) == sorted(full[s]) for s in range(60))
    assert take(StepBatchSampler(100, 4, seed=2, echo=2), 60) != full


class Counting(torch.utils.data.Dataset):
    """Counts how often each sample is made; making one draws from torch's RNG."""

    def __init__(self) -> None:
        self.made = Counter()

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        self.made[index] += 1
        return {"x": torch.rand(1) + index}


def test_sample_memory_makes_each_sample_once_and_leaves_the_rng_as_a_miss_would():
    dataset = Counting()
    memory = SampleMemory(dataset, capacity=2)
    torch.manual_seed(0)
    first = memory[0]
    after_miss = torch.rand(3)
    torch.manual_seed(0)
    assert memory[0] is first
    assert torch.equal(torch.rand(3), after_miss)  # augmentation draws the same either way
    memory[1], memory[0], memory[2]  # noqa: B018 — 1 is now the least recently used
    memory[0]
    assert dataset.made == {0: 1, 1: 1, 2: 1}
    memory[1]
    assert dataset.made[1] == 2 and len(memory) == 8


def test_training_with_echo_makes_each_sample_once_and_a_worker_trains_the_same_run(
    tiny, monkeypatch
):
    from datasets.synthetic import SyntheticRooms
    from dense.trainer import train

    made = Counter()
    render = SyntheticRooms.__getitem__

    def counted(self, index):
        if self.split == "train":
            made[index] += 1
        return render(self, index)

    monkeypatch.setattr(SyntheticRooms, "__getitem__", counted)  # seen in this process only
    steps = ("train.steps=12", "train.eval_every=12", "train.checkpoint_every=12", "data.echo=2")
    echoed = train(tiny("run.name=echo", *steps)).metrics
    assert max(made.values()) == 1 and sum(made.values()) < 12 * 4  # each made once, reused
    worker = train(tiny("run.name=worker", "data.num_workers=1", *steps)).metrics
    assert worker == echoed  # the worker's own memory gives the same batches
    assert train(tiny("run.name=plain", *steps[:3])).metrics != echoed
