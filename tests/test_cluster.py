"""The strategy and TF_CONFIG (pure): 1 GPU, N GPUs, M Slurm nodes."""

from __future__ import annotations

import json

import pytest

from train.launch import cluster, specs
from train.options import RunOptions


def test_cpu_when_no_gpu_or_gpus_none():
    assert cluster.choose_topology("all", 0, {}).kind == cluster.CPU
    cpu = cluster.choose_topology("none", 4, {})
    assert (cpu.kind, cpu.gpus, cpu.replicas) == (cluster.CPU, (), 1)


def test_one_gpu_is_mirrored_over_it():
    one = cluster.choose_topology("all", 1, {})
    assert (one.kind, one.gpus, one.replicas, one.is_chief) == (cluster.MIRRORED, (0,), 1, True)


def test_n_gpus_all_or_chosen():
    four = cluster.choose_topology("all", 4, {})
    assert (four.kind, four.gpus, four.replicas) == (cluster.MIRRORED, (0, 1, 2, 3), 4)
    two = cluster.choose_topology("0,2", 4, {})
    assert (two.gpus, two.replicas) == ((0, 2), 2)


@pytest.mark.parametrize(
    "flag,visible,message",
    [
        ("2", 2, "GPU 2 is not visible (2 visible"),
        ("0,0", 2, "listed twice"),
        ("first", 2, "expected 'all', 'none' or GPU indices"),
    ],
)
def test_bad_gpus_flag_is_one_line_error(flag, visible, message):
    with pytest.raises(cluster.ClusterError, match=message.replace("(", r"\(")):
        cluster.choose_topology(flag, visible, {})


@pytest.mark.parametrize(
    "hostlist,expected",
    [
        ("vm", ["vm"]),
        ("gpu[01-03,07]", ["gpu01", "gpu02", "gpu03", "gpu07"]),
        ("a[1-2],b3", ["a1", "a2", "b3"]),
        ("r[1-2]-n[1-2]", ["r1-n1", "r1-n2", "r2-n1", "r2-n2"]),
    ],
)
def test_expand_hostlist(hostlist, expected):
    assert cluster.expand_hostlist(hostlist) == expected


def test_expand_tasks_per_node():
    assert cluster.expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    with pytest.raises(cluster.ClusterError):
        cluster.expand_tasks_per_node("2x3")


SLURM_M_NODES = {
    "SLURM_JOB_ID": "4242",
    "SLURM_PROCID": "3",
    "SLURM_STEP_NUM_TASKS": "7",
    "SLURM_STEP_NODELIST": "gpu[01-03],cpu7",
    "SLURM_JOB_NODELIST": "gpu[01-09],cpu7",  # the step's list wins
    "SLURM_STEP_TASKS_PER_NODE": "2(x3),1",
    "CUDA_VISIBLE_DEVICES": "3,5",
}


def test_m_nodes_tf_config_from_slurm_step():
    topology = cluster.choose_topology("all", 2, SLURM_M_NODES)
    base = 20000 + (4242 % 2000) * 16
    assert topology.kind == cluster.MULTI_WORKER and topology.source == "slurm"
    assert topology.tf_config == {
        "cluster": {
            "worker": [
                f"gpu01:{base}",
                f"gpu01:{base + 1}",
                f"gpu02:{base}",
                f"gpu02:{base + 1}",
                f"gpu03:{base}",
                f"gpu03:{base + 1}",
                f"cpu7:{base}",
            ]
        },
        "task": {"type": "worker", "index": 3},
    }
    assert (topology.rank, topology.num_workers, topology.replicas) == (3, 7, 14)
    assert not topology.is_chief
    assert topology.work_dir("/runs/a") == "/runs/a/workers/rank-3"


def test_port_base_override_and_job_id_spread():
    env = {**SLURM_M_NODES, "TF_PORT_BASE": "31000"}
    assert (
        cluster.choose_topology("none", 0, env).tf_config["cluster"]["worker"][0] == "gpu01:31000"
    )
    ports = {cluster.port_base({"SLURM_JOB_ID": str(job)}) for job in range(2000)}
    assert len(ports) == 2000 and max(ports) + cluster.PORTS_PER_NODE <= 65535


def test_batch_script_is_not_a_worker():
    # The batch shell of a 2-task job has SLURM_NTASKS but no step: it runs one process.
    env = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "vm"}
    assert cluster.choose_topology("all", 0, env).kind == cluster.CPU


def test_inconsistent_slurm_env_is_an_error():
    env = {**SLURM_M_NODES, "SLURM_STEP_TASKS_PER_NODE": "2"}
    with pytest.raises(cluster.ClusterError, match="do not match"):
        cluster.choose_topology("all", 0, env)


def test_user_tf_config_is_used_and_validated():
    config = {"cluster": {"worker": ["h1:2222", "h2:2222"]}, "task": {"type": "worker", "index": 1}}
    topology = cluster.choose_topology("all", 0, {"TF_CONFIG": json.dumps(config)})
    assert (topology.kind, topology.rank, topology.source) == (cluster.MULTI_WORKER, 1, "TF_CONFIG")
    single = {"cluster": {"worker": ["h1:2222"]}, "task": {"type": "worker", "index": 0}}
    assert cluster.choose_topology("all", 0, {"TF_CONFIG": json.dumps(single)}).kind == cluster.CPU
    with pytest.raises(cluster.ClusterError, match="workers only"):
        chief = {"cluster": {"chief": ["h:1"], "worker": ["h:2"]}, "task": {"type": "chief"}}
        cluster.choose_topology("all", 0, {"TF_CONFIG": json.dumps(chief)})


def _plan(tmp_path, topology, **options):
    run = RunOptions(pipeline_config="in.config", model_dir=str(tmp_path / "m"), **options)
    return specs.build_launch(run, str(tmp_path / "m" / "pipeline.config"), 30, 0, {}, topology)


def test_plan_for_one_gpu_n_gpus_and_m_nodes(tmp_path):
    one = _plan(tmp_path, cluster.choose_topology("all", 1, {}))
    assert one.strategy.kind == "mirrored" and one.strategy.replicas == 1
    assert "TF_CONFIG" not in one.env and "CUDA_VISIBLE_DEVICES" not in one.env

    n = _plan(tmp_path, cluster.choose_topology("1,3", 4, {}), eval=True)
    assert (n.strategy.gpus, n.strategy.replicas) == ((1, 3), 2)
    assert n.eval.model_dir == str(tmp_path / "m") and n.eval.on_gpu is False

    m = _plan(tmp_path, cluster.choose_topology("all", 2, SLURM_M_NODES), eval=True)
    assert json.loads(m.env["TF_CONFIG"])["task"]["index"] == 3
    assert "CUDA_VISIBLE_DEVICES" not in m.env  # Slurm's "3,5" is left to the child as it is
    assert (m.strategy.kind, m.strategy.rank, m.strategy.replicas) == ("multi_worker", 3, 14)
    assert m.model_dir == str(tmp_path / "m")  # all workers train into the shared model_dir
    assert m.work_dir == str(tmp_path / "m" / "workers" / "rank-3")
    assert m.log_path.startswith(m.work_dir) and m.argv[-1].startswith(m.work_dir)
    assert m.eval is None  # evaluation runs beside the chief only
    assert json.loads(specs.launch_json(m))["train"]["strategy"]["kind"] == "multi_worker"
    assert m.train.outcome.startswith(m.work_dir)  # each worker reports its own end
    assert not (tmp_path / "m").exists()
