"""Cluster figures for docs/performance.md: starts a throwaway PostgreSQL, a nats-server
(with monitoring) and the nodes on loopback, runs one measurement, prints its figure.

    python3 Tests/Cluster/bench_cluster.py HUB MODE

HUB is a hub binary (a release build for figures). MODE is one of:
- takeover     `hub bench takeover` between two nodes, the old connection open
- killed       50 devices on node 1; node 1 is killed (-9); each reconnects to node 2, timed
- single       `hub bench ingest` against a single-node hub on the same PostgreSQL
- cluster1     `hub bench ingest` against one `--cluster` node (the fence's cost: alternate with `single`)
- forward      `hub bench ingest` to node 1 while a dashboard on node 2 follows `*`; NATS messages/s
- crossnode    `hub bench fanout -p 10 -s 100 --rate 50000`: devices on node 1, dashboards on node 2
- samenode     the same with devices and dashboards on node 1 (alternate with `crossnode`)
- singlenode   the same against one hub without `--cluster` (what cluster mode costs that path)
- cpu1         committed readings per CPU-second of hub, nats-server and PostgreSQL together:
               one hub without `--cluster`, `hub bench ingest --rate 100000` (alternate with cpu2)
- cpu2         the same with two `--cluster` nodes, each taking half the devices and half the rate

Not a test: pytest does not collect it (its name does not start with test_).
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "Faults"), os.path.join(HERE, "..", "..", "devices", "python", "tests")]

from conftest import wait_for_port  # noqa: E402
from livehub import LiveHub, free_port  # noqa: E402
from pgcluster import PgCluster  # noqa: E402


def ws_url(hub):
    return hub.url.replace("http://", "ws://")


def ingest(hub_binary, node):
    out = subprocess.run([hub_binary, "bench", "ingest", "--url", ws_url(node), "--no-ceiling", "-t", "8"],
                         capture_output=True, text=True, timeout=300)
    return next(line.strip() for line in out.stdout.splitlines() if "committed" in line)


def cpu_ticks(pid, children_too=False):
    """utime + stime of a process (with cutime + cstime: the children it reaped), in ticks."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0
    return sum(int(f) for f in fields[11:15 if children_too else 13])


def server_ticks(nodes, nats, database):
    """CPU ticks of the hub nodes, nats-server and every PostgreSQL process (the
    postmaster counts the backends it reaped)."""
    postmaster = database.pid()
    backends = [int(p) for p in subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()]
    return {"hub": sum(cpu_ticks(n.proc.pid) for n in nodes), "nats": cpu_ticks(nats.pid),
            "postgres": cpu_ticks(postmaster, children_too=True) + sum(cpu_ticks(p) for p in backends)}


def cpu_per_reading(hub_binary, nodes, nats, database, rate=100_000, devices=100, seconds=10):
    rows = lambda: int(database.psql("select count(*) from reading")[0])  # noqa: E731
    before_rows, before = rows(), server_ticks(nodes, nats, database)
    began = time.monotonic()
    tools = [subprocess.Popen([hub_binary, "bench", "ingest", "--url", ws_url(node), "--no-ceiling", "-t", str(seconds),
                               "-d", str(devices // len(nodes)), "--rate", str(rate // len(nodes))],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for node in nodes]
    outputs = [tool.communicate(timeout=300)[0] for tool in tools]
    elapsed = time.monotonic() - began
    time.sleep(0.5)  # the last commits
    after, stored = server_ticks(nodes, nats, database), rows() - before_rows
    hertz = os.sysconf("SC_CLK_TCK")
    spent = {k: (after[k] - before[k]) / hertz for k in after}
    total = sum(spent.values())
    lines = [next((line.strip() for line in out.splitlines() if "committed" in line), out[-300:]) for out in outputs]
    return (f"{len(nodes)} node(s): {stored} readings stored in {elapsed:.1f} s; CPU s hub {spent['hub']:.2f}, "
            f"nats {spent['nats']:.2f}, postgres {spent['postgres']:.2f}, total {total:.2f}: "
            f"{stored / total:.0f} readings per CPU-second\n" + "\n".join(lines))


async def killed_takeover(nodes):
    from websockets.asyncio.client import connect
    sockets = [await connect(f"{ws_url(nodes[0])}/devices/dead-{i}") for i in range(50)]
    for socket in sockets:
        await socket.recv()
    nodes[0].proc.send_signal(signal.SIGKILL)
    nodes[0].proc.wait()
    nodes[0].proc = None
    await asyncio.sleep(0.2)
    times = []
    for i in range(50):
        started = time.monotonic()
        socket = await connect(f"{ws_url(nodes[1])}/devices/dead-{i}")
        assert json.loads(await socket.recv())["type"] == "welcome"
        times.append((time.monotonic() - started) * 1000)
    times.sort()
    return (f"takeover from a killed node: {len(times)} devices, p50 {times[len(times) // 2]:.1f} ms, "
            f"p99 {times[int(len(times) * 0.99) - 1]:.1f} ms, max {times[-1]:.1f} ms")


def forward(hub_binary, nodes, monitor):
    from websockets.sync.client import connect

    def varz():
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/varz") as answer:
            return json.load(answer)

    received, stop = [0], threading.Event()

    def dashboard():
        with connect(ws_url(nodes[1]) + "/live", additional_headers={"Authorization": f"Bearer {nodes[1].api_token}"}) as ws:
            ws.recv()
            ws.send(json.dumps({"type": "subscribe", "id": "s", "devices": ["*"], "max_rate_hz": 1}))
            while not stop.is_set():
                try:
                    ws.recv(timeout=0.5)
                    received[0] += 1
                except TimeoutError:
                    pass

    thread = threading.Thread(target=dashboard, daemon=True)
    thread.start()
    time.sleep(2)
    before, started = varz(), time.time()
    line = ingest(hub_binary, nodes[0])
    after, elapsed = varz(), time.time() - started
    stop.set()
    return (f"{line}\nNATS {(after['in_msgs'] - before['in_msgs']) / elapsed:.0f} messages/s, "
            f"{(after['in_bytes'] - before['in_bytes']) / elapsed / 1e6:.1f} MB/s over {elapsed:.1f} s "
            f"(the whole bench, connects and warm-up included); dashboard messages {received[0]}")


def main():
    hub_binary, mode = sys.argv[1], sys.argv[2]
    port, monitor = free_port(), free_port()
    nats = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    database, nodes = PgCluster(), []
    try:
        wait_for_port(port)
        count = {"takeover": 2, "killed": 2, "forward": 2, "crossnode": 2, "samenode": 2, "cpu2": 2}.get(mode, 1)
        for n in range(1, count + 1):
            args = ["--database-url", database.url, "--auto-provision", "--log-level", "error"]
            if mode not in ("single", "singlenode", "cpu1"):
                args += ["--cluster", f"nats://127.0.0.1:{port}", "--node-id", f"node{n}"]
            node = LiveHub(hub_binary, args)
            node.start()
            nodes.append(node)
        if mode == "takeover":
            out = subprocess.run([hub_binary, "bench", "takeover", "--url", ws_url(nodes[0]), "--to", ws_url(nodes[1]),
                                  "-n", "20", "--moves", "10"], capture_output=True, text=True, timeout=300)
            print(out.stdout.strip())
        elif mode == "killed":
            print(asyncio.run(killed_takeover(nodes)))
        elif mode == "forward":
            print(forward(hub_binary, nodes, monitor))
        elif mode in ("cpu1", "cpu2"):
            print(cpu_per_reading(hub_binary, nodes, nats, database))
        elif mode in ("crossnode", "samenode", "singlenode"):
            dashboards = nodes[1] if mode == "crossnode" else nodes[0]
            out = subprocess.run([hub_binary, "bench", "fanout", "-p", "10", "-s", "100", "--rate", "50000", "-t", "8",
                                  "--url", ws_url(dashboards), "--api-token", dashboards.api_token,
                                  "--devices-url", ws_url(nodes[0])], capture_output=True, text=True, timeout=300)
            print(out.stdout.strip(), out.stderr.strip()[-500:])
        else:
            print(ingest(hub_binary, nodes[0]))
    finally:
        for node in nodes:
            node.cleanup()
        database.cleanup()
        nats.terminate()
        nats.wait(10)


if __name__ == "__main__":
    main()
