"""The length-bucketed training batches: every window once an epoch, and on several processes the batches of one
step alike in length (the processes wait for the longer one at each step's all-reduce)."""
import numpy as np
import pytest

from ner_ofa.training import bucketed_batches, make_batch_sampler


def lengths_like_sentences(n=3000, seed=0):
    """Window lengths spread as sentences' are: many short, a long tail up to the 126-character window."""
    return np.minimum(np.random.RandomState(seed).lognormal(3.6, 0.6, n).astype(int) + 1, 126).tolist()


def step_costs(lengths, per_rank):
    """Padded tokens a step costs when the processes wait for each other (the longest batch) and the tokens
    the same batches would cost if each process's share were as long as the step's mean."""
    steps = list(zip(*per_rank))
    waited = sum(max(len(b) * max(lengths[i] for i in b) for b in step) for step in steps)
    mean = sum(np.mean([len(b) * max(lengths[i] for i in b) for b in step]) for step in steps)
    return waited, mean


@pytest.mark.parametrize("group", [1, 2, 3])
def test_every_window_once(group):
    lengths = lengths_like_sentences(1001)
    batches = bucketed_batches(lengths, 16, np.random.RandomState(3), group=group)
    assert sorted(i for b in batches for i in b) == list(range(1001))
    assert all(len(b) <= 16 for b in batches)


def sampler_shares(lengths, nranks, epoch=0):
    shares = []
    for rank in range(nranks):
        sampler = make_batch_sampler(lengths, 16, seed=42)
        sampler.nranks, sampler.local_rank, sampler.epoch = nranks, rank, epoch
        shares.append(list(sampler))
        assert len(shares[-1]) == len(sampler)
    return shares


def test_two_processes_get_batches_alike_in_length_at_each_step():
    lengths = lengths_like_sentences()
    shares = sampler_shares(lengths, 2)
    seen = [i for share in shares for b in share for i in b]
    assert len(seen) == len(set(seen)) and len(seen) >= len(lengths) - 2 * 16  # at most the last run is cut
    waited, mean = step_costs(lengths, shares)
    assert waited / mean < 1.06, (waited, mean)
    # the case this guards: two batches drawn independently make each step cost its longer one
    independent = bucketed_batches(lengths, 16, np.random.RandomState(42))
    waited, mean = step_costs(lengths, [independent[0::2], independent[1::2]])
    assert waited / mean > 1.15, (waited, mean)


def test_one_process_order_is_the_ungrouped_one():
    """group=1 shuffles the same list in the same way: a one-process run's batches do not change."""
    lengths = lengths_like_sentences(500)
    grouped = bucketed_batches(lengths, 16, np.random.RandomState(7), group=1)
    rng = np.random.RandomState(7)
    order = rng.permutation(len(lengths))
    plain = []
    for start in range(0, len(order), 16 * 50):
        chunk = sorted(order[start:start + 16 * 50].tolist(), key=lambda i: lengths[i])
        plain.extend(chunk[i:i + 16] for i in range(0, len(chunk), 16))
    rng.shuffle(plain)
    assert grouped == plain
    assert sampler_shares(lengths, 1) == [bucketed_batches(lengths, 16, np.random.RandomState(42))]


def test_epochs_draw_other_orders():
    lengths = lengths_like_sentences(800)
    assert sampler_shares(lengths, 2, epoch=0) != sampler_shares(lengths, 2, epoch=1)
