"""Training on several processes: initialising the collective environment, the launch command, a barrier
without gloo's 30-second limit, all-reduced counts and sums, and sharing work among the processes."""
import itertools
import sys
import time

import numpy as np


def init_distributed():
    """Return (rank, world_size); initialise the collective env under paddle.distributed.launch."""
    import paddle.distributed as dist

    world_size = dist.get_world_size()
    if world_size > 1:
        dist.init_parallel_env()
    return dist.get_rank(), world_size


_BARRIER_COUNT = itertools.count()


def launch_command(procs, log_dir):
    """The command prefix that runs a script on ``procs`` local processes (Paddle's collective launcher)."""
    return [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(procs), "--log_dir",
            str(log_dir)]


def barrier(world_size):
    """Wait until every process gets here. Not ``dist.barrier()``: on the CPU its gloo backend gives up after
    30 s, shorter than rank 0's dev evaluation or test scoring while the others wait; this counts arrivals in the
    launch's TCP store and polls it, without a deadline. Every process must call it the same number of times.
    The store lives in rank 0, so rank 0 also waits until every process has seen the count and left: a last
    barrier before rank 0 exits must not take the store away from a process still polling it."""
    if world_size > 1:
        from paddle.base import core
        from paddle.distributed import get_rank

        store = core.create_or_get_global_tcp_store()
        key = f"ner_ofa/barrier/{next(_BARRIER_COUNT)}"
        for counter in (key, key + "/left"):
            store.add(counter, 1)
            if counter == key or get_rank() == 0:
                while store.add(counter, 0) < world_size:
                    time.sleep(0.1)


def count_on_ranks(flag, world_size):
    """How many processes have ``flag`` true (an all-reduce; just ``int(flag)`` in a single process)."""
    return int(Ranks(None, world_size).sum([int(flag)])[0])


class Ranks:
    """This process's place among the data-parallel processes, for work they share (scoring, importance):
    ``shard`` gives it its part of a list, ``sum`` adds numbers over every process (each must call it the same
    number of times). With one process both are the identity."""

    def __init__(self, rank, world_size):
        self.rank, self.world_size = rank, world_size

    def shard(self, items):
        return items[self.rank::self.world_size] if self.world_size > 1 else items

    def sum(self, values):
        """``values`` (numbers, or a numpy array) summed over the processes, as a numpy array of the same shape
        (int64 stays exact; floats are summed in float64)."""
        values = np.asarray(values)
        if self.world_size == 1:
            return values
        import paddle
        import paddle.distributed as dist

        dtype = "int64" if np.issubdtype(values.dtype, np.integer) else "float64"
        total = paddle.to_tensor(values.astype(dtype))
        dist.all_reduce(total)
        return total.numpy()
