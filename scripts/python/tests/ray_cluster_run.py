"""The Ray ingestion on a real Ray cluster, run by test_ray.py inside a loopback-only network
namespace: a head and two worker nodes (ray.cluster_utils, each node its own raylet and object
store), a dcd server, a folder of generated images. Midway through the job one worker node that
hosts an embedding worker is killed with SIGKILL. Prints one JSON object with what happened.

    python ray_cluster_run.py IMAGES_DIR DATA_DIR WEIGHTS [--kill]
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

import grpc  # noqa: E402
import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from conftest import worker_dcds  # noqa: E402
from dcd_client import Client  # noqa: E402
from dcd_client.ray import ingest, list_folder  # noqa: E402


def parent_of(pid):
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])


def ancestors(pid):
    out = []
    while pid > 1:
        pid = parent_of(pid)
        out.append(pid)
    return out


def main():
    images, data, weights = sys.argv[1:4]
    kill = "--kill" in sys.argv
    dcd = os.environ["DCD_BIN"]
    started = time.monotonic()
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    # The driver joins before the worker nodes exist, so it attaches to the head's raylet:
    # every node has the address 127.0.0.1, and a driver attached to the node killed below
    # would go with it.
    ray.init(address=cluster.address)
    nodes = [cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1") for _ in range(2)]
    cluster.wait_for_nodes()
    cluster_seconds = time.monotonic() - started
    server = subprocess.Popen(
        [dcd, "--data-dir", data, "--log", "warn", "serve", "--addr", "127.0.0.1:0",
         "--allow-root", images, "--allow-root", os.path.dirname(weights)],
        stdout=subprocess.PIPE, text=True)
    out = {}
    try:
        url = server.stdout.readline().split()[-1]
        grpc.channel_ready_future(grpc.insecure_channel(url)).result(timeout=60)
        c = Client(url)
        c.create_pool("ray", backbone="mobilenetv2", weights=weights)
        c.create_pool("ref", backbone="mobilenetv2", weights=weights)
        killed = {}

        def killer():
            while c.get_pool("ray").items < 300:
                time.sleep(0.2)
            hosts = {a for w in worker_dcds() for a in ancestors(w)}
            victim = next(n for n in nodes if n.all_processes["raylet"][0].process.pid in hosts)
            killed["at_items"] = c.get_pool("ray").items
            killed["node"] = victim.node_id
            # SIGKILL to every process of the node (raylet, object store, its workers).
            cluster.remove_node(victim, allow_graceful=False)

        if kill:
            threading.Thread(target=killer, daemon=True).start()
        s = ingest(images, "ray", url, dcd_bin=dcd, batch_size=32, workers=2)
        out["ray"] = {**s.__dict__, "images_per_second": s.images_per_second}
        out["killed"] = killed
        # The same folder through dcd's own ingestion, on the same machine.
        t = time.monotonic()
        job = c.ingest_folder("ref", images)
        out["ref"] = {"state": job.state, "stored": job.stored,
                      "seconds": time.monotonic() - t}
        out["ref"]["images_per_second"] = job.stored / out["ref"]["seconds"]
        # Every image once, with the vector the server's own embedding gives: its nearest
        # stored row, by exact search, is itself at a distance that bounds the cosine.
        entries = list_folder(images)
        out["pool_items"] = c.get_pool("ray").items
        sample = entries[:: max(1, len(entries) // 50)]
        worst = 0.0
        mismatched = []
        vectors = c.embed([e.path for e in sample], pool="ray")
        for e, v in zip(sample, vectors):
            hit = c.search("ray", [v], k=1, exact=True)[0][0]
            if hit.key != e.key:
                mismatched.append(e.key)
            worst = max(worst, hit.distance / float((v * v).sum()))
        out["sampled"] = len(sample)
        out["mismatched"] = mismatched
        out["worst_relative_distance"] = worst
        out["cluster_seconds"] = cluster_seconds
    except BaseException:
        # Said before the cluster goes: Ray may end the process while it shuts down.
        traceback.print_exc()
        sys.stderr.flush()
        out["error"] = traceback.format_exc()
        print(json.dumps(out), flush=True)
        raise
    finally:
        ray.shutdown()
        cluster.shutdown()
        server.send_signal(signal.SIGTERM)
        out["server_exit"] = server.wait(timeout=60)
        time.sleep(1)
        out["leftover_worker_dcds"] = len(worker_dcds())
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
