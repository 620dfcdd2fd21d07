"""Run by tests/test_distributed.py under torchrun: rank 1 alone produces a NaN loss on its 3rd and 4th
forward passes. Every rank must skip those steps together (no rank left waiting in an all-reduce), and the
run must end with the same weights on every rank. Prints 'rank R: steps S skipped K' per rank."""
import sys

import torch

from ddpm import distributed
from ddpm.train import Trainer
from helpers import sklearn_digits, tiny_config
from test_resume import inject

world = distributed.init("cpu")
out = sys.argv[1]
trainer = Trainer(tiny_config(train={"steps": 6, "batch_size": 8}), out, torch.device("cpu"), data=sklearn_digits(64), quiet=True)
if world.rank == 1:
    inject(trainer, bad_calls={3, 4})
summary = trainer.run()
first = next(trainer.model.parameters()).detach().clone()
gathered = [torch.empty_like(first) for _ in range(world.size)]
torch.distributed.all_gather(gathered, first)
same = all(torch.equal(g, gathered[0]) for g in gathered)
print(f"rank {world.rank}: steps {summary['steps']} skipped {summary['skipped_steps']} same weights {same}", flush=True)
distributed.finish()
