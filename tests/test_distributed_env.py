"""Which rank a process is, from torchrun's variables or srun's, and where srun's tasks meet:
SLURM's compressed node lists, the master port, and the errors that name the variable."""

from __future__ import annotations

import pytest

from robustresnet.errors import ConfigError
from robustresnet.train.distributed import World, detect_world, expand_nodelist, srun_rendezvous

SRUN = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}


@pytest.mark.parametrize(
    ("env", "world"),
    [
        ({}, World()),
        ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, World(1, 2, 1)),
        (SRUN, World(3, 8, 1)),
        ({**SRUN, "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, World()),  # a one-task job step
        ({**SRUN, "RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "0"}, World(0, 4, 0)),  # torchrun
        ({"SLURM_PROCID": "3", "SLURM_NTASKS": "8"}, World()),  # not srun's full set
    ],
    ids=["alone", "torchrun", "srun", "one-task", "torchrun-in-slurm", "partial"],
)
def test_the_world_comes_from_torchrun_then_srun(env, world):
    assert detect_world(env) == world


@pytest.mark.parametrize(
    ("nodelist", "hosts"),
    [
        ("node7", ["node7"]),
        ("gpu[01-04,07],cpu3", ["gpu01", "gpu02", "gpu03", "gpu04", "gpu07", "cpu3"]),
        ("n[8-10]", ["n8", "n9", "n10"]),
        ("a[1-2]-ib[3-4]", ["a1-ib3", "a1-ib4", "a2-ib3", "a2-ib4"]),
        ("x1.cluster,y[2]", ["x1.cluster", "y2"]),
    ],
)
def test_compressed_node_lists_expand_in_order(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("nodelist", ["gpu[a-b]", "x,,y", "gpu[1-", "a]b"])
def test_malformed_node_lists_are_named(nodelist):
    with pytest.raises(ConfigError, match="SLURM_NODELIST"):
        expand_nodelist(nodelist)


def test_rendezvous_on_the_first_host_with_a_port_from_the_job_id():
    env = {**SRUN, "SLURM_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "123456"}
    first = srun_rendezvous(env)
    assert first["MASTER_ADDR"] == "gpu07"
    assert 15000 <= int(first["MASTER_PORT"]) < 30000
    assert srun_rendezvous(env) == first  # every task of the job computes the same
    other = srun_rendezvous({**env, "SLURM_JOB_ID": "123457"})
    assert other["MASTER_PORT"] != first["MASTER_PORT"]
    # The step's own node list wins over the job's; set variables win over both.
    assert srun_rendezvous({**env, "SLURM_STEP_NODELIST": "cpu9"})["MASTER_ADDR"] == "cpu9"
    chosen = srun_rendezvous({**env, "MASTER_ADDR": "head", "MASTER_PORT": "29500"})
    assert chosen == {"MASTER_ADDR": "head", "MASTER_PORT": "29500"}


def test_rendezvous_without_a_node_list_or_job_id_names_the_variable():
    with pytest.raises(ConfigError, match="SLURM_NODELIST"):
        srun_rendezvous(SRUN)
    with pytest.raises(ConfigError, match="SLURM_JOB_ID"):
        srun_rendezvous({**SRUN, "SLURM_NODELIST": "n1"})
