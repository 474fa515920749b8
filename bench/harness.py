#!/usr/bin/env python3
"""latchkey's benchmark: latchkey against bare baselines (and, on PostgreSQL, a hand-written
GraphQL Yoga peer), on the same machine, database settings and data, in one run.

`bench/run` builds everything and calls this; see bench/README.md for the method and the
settings (BENCH_* environment variables). It writes a results JSON into the run's folder
and then BENCHMARKS.md and the plot (bench/report.py).
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DEFAULT_DURATION = 10.0
DEFAULT_ROWS_LARGE = 1_000_000


def setting(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def seconds(text: str) -> float:
    return float(text.rstrip("s"))


@dataclass
class Settings:
    latchkey: Path
    tools: Path
    duration: float = field(default_factory=lambda: seconds(setting("BENCH_DURATION", str(DEFAULT_DURATION))))
    warmup: float = field(default_factory=lambda: seconds(setting("BENCH_WARMUP", "2")))
    repeats: int = field(default_factory=lambda: int(setting("BENCH_REPEATS", "3")))
    rows: int = field(default_factory=lambda: int(setting("BENCH_ROWS", "1000")))
    rows_large: int = field(default_factory=lambda: int(setting("BENCH_ROWS_LARGE", str(DEFAULT_ROWS_LARGE))))
    connections: list[int] = field(
        default_factory=lambda: [int(c) for c in setting("BENCH_CONNECTIONS", "8,64").split(",")]
    )
    databases: list[str] = field(default_factory=lambda: setting("BENCH_DATABASES", "sqlite,postgres").split(","))
    workloads: list[str] = field(
        default_factory=lambda: setting("BENCH_WORKLOADS", "typename,trivial,page,create,instance").split(",")
    )
    statement_requests: int = field(default_factory=lambda: int(setting("BENCH_STATEMENT_REQUESTS", "20")))
    postgres_admin: str = field(
        default_factory=lambda: setting("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    postgres_log: str = field(default_factory=lambda: setting("BENCH_POSTGRES_LOG", ""))
    server_cpu: str = field(default_factory=lambda: setting("BENCH_SERVER_CPU", "0"))
    loadgen_cpu: str = field(default_factory=lambda: setting("BENCH_LOADGEN_CPU", "1"))
    arrivals: str = field(default_factory=lambda: setting("BENCH_ARRIVALS", "poisson"))
    rate_connections: int = field(default_factory=lambda: int(setting("BENCH_RATE_CONNECTIONS", "64")))

    @property
    def smoke(self) -> bool:
        return (
            self.duration < DEFAULT_DURATION
            or self.rows_large < DEFAULT_ROWS_LARGE
            or self.repeats < 3
            or set(self.databases) != {"sqlite", "postgres"}
        )


# --------------------------------------------------------------------------------------
# workloads

@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    baseline: str  # the baseline's route
    baseline_title: str
    user: str  # whose token sends it
    peer: bool  # the Yoga peer answers it too


WORKLOADS = [
    Workload("typename", "`{ __typename }`, user token", "b0", "B0", "page", True),
    Workload("trivial", "trivial query `viewer { details { name } }`", "get", "B-get", "page", True),
    Workload("page", "`viewer { authentications(first: 20) }`, {rows} rows", "page", "B-page", "page", True),
    Workload("create", "`createUserAuthentication`, 1 KB credentials", "create", "B-create", "create", True),
    Workload(
        "instance", "`createSolutionInstance`, 2 auth + 2 config values", "instance", "B-instance", "instance", False
    ),
]

PAGE_QUERY = (
    "query Page($after: String) { viewer { authentications(first: 20, after: $after) "
    "{ edges { cursor node { id name scopes created } } pageInfo { hasNextPage endCursor } } } }"
)


def perf_works() -> bool:
    if not shutil.which("perf"):
        return False
    return subprocess.run(["perf", "stat", "-e", "task-clock", "true"], capture_output=True).returncode == 0


def crate_of(symbol: str, dso: str) -> str:
    """The crate a Rust symbol comes from (its first path segment), else the library."""
    if dso == "[kernel.kallsyms]":
        return "kernel"
    if not dso.startswith("latchkey"):
        return dso
    text = symbol.lstrip("<&*").removeprefix("mut ").removeprefix("dyn ")
    if "::" not in text:
        return f"{dso} (C)"
    head = re.split(r"::|<| |\(", text, maxsplit=1)[0]
    return head if head and not head.startswith(("_", "0x")) else f"{dso} (C)"


def perf_summary(data: Path) -> dict:
    """Shares of samples by thread, by crate and by symbol (the top 15)."""
    def report(*sort: str) -> list[tuple[float, list[str]]]:
        done = subprocess.run(
            ["perf", "report", "-i", str(data), "--no-children", "--stdio", "-g", "none", "--field-separator",
             "\t", "--sort", ",".join(sort)],
            capture_output=True, text=True,
        )
        rows = []
        for line in done.stdout.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            fields = [f.strip() for f in line.split("\t")]
            try:
                rows.append((float(fields[0].rstrip("%")), fields[1:]))
            except (ValueError, IndexError):
                continue
        return rows

    threads: dict[str, float] = {}
    for share, (comm, *_) in report("comm"):
        threads[comm] = threads.get(comm, 0.0) + share
    crates: dict[str, float] = {}
    symbols = []
    for share, (dso, symbol, *_) in report("dso", "sym"):
        symbol = re.sub(r"^\[.\]\s*", "", symbol)
        crate = crate_of(symbol, dso)
        crates[crate] = crates.get(crate, 0.0) + share
        symbols.append((share, symbol[:120], crate))
    top = lambda table: dict(sorted(((k, round(v, 1)) for k, v in table.items()), key=lambda kv: -kv[1])[:15])
    return {"threads": top(threads), "crates": top(crates), "symbols": [list(s) for s in symbols[:15]]}


def log(message: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def pinned(cpu: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if cpu != "none" and shutil.which("taskset") else argv


# --------------------------------------------------------------------------------------
# servers

class Server:
    """One server process, pinned to the server core, its output in the run folder."""

    def __init__(self, name: str, argv: list[str], env: dict, port: int, health: str, cpu: str, log_path: Path):
        self.name, self.argv, self.env, self.port, self.health = name, argv, env, port, health
        self.cpu, self.log_path = cpu, log_path
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        out = open(self.log_path, "ab")
        # A session of its own: signals meant for the harness or gdb's interrupts never reach it.
        self.process = subprocess.Popen(
            pinned(self.cpu, self.argv), env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.base + self.health, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not become healthy; see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _status(self, key: str) -> int | None:
        if not self.process:
            return None
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def rss_kb(self) -> int | None:
        return self._status("VmRSS")

    def peak_kb(self) -> int | None:
        return self._status("VmHWM")

    def reset_peak(self) -> None:
        if self.process:
            try:
                Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
            except OSError:
                pass


# --------------------------------------------------------------------------------------
# GraphQL setup through latchkey's own API

def graphql(base: str, token: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        base + "/graphql",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        result = json.load(answer)
    if result.get("errors"):
        raise RuntimeError(f"GraphQL errors: {result['errors']}")
    return result["data"]


def catalog_ids() -> dict:
    catalog = json.loads((ROOT / "data" / "catalog.json").read_text())
    ids = {}
    for service in catalog["services"]:
        production = next(env for env in service["environments"] if env["title"] == "Production")
        ids[service["name"]] = (service["id"], production["id"])
    return ids


def zendesk_credentials(size: int) -> dict:
    """Zendesk credentials whose JSON text is `size` bytes."""
    base = {"email": "bench@example.com", "api_token": ""}
    pad = size - len(json.dumps(base, separators=(",", ":")))
    base["api_token"] = ("6wiIBWbGkBMo1mRD" * (pad // 16 + 1))[: max(pad, 1)]
    return base


CREATE_AUTH = (
    "mutation Create($input: CreateUserAuthenticationInput!) "
    "{ createUserAuthentication(input: $input) { authenticationId } }"
)


@dataclass
class Fixture:
    master: str
    users: dict  # role -> user id
    tokens: dict  # role -> user token
    bodies: dict  # workload -> path of the request body
    solution: str
    big_template: str
    page_middle_cursor: str = ""


def setup(base: str, master: str, rows: int, folder: Path) -> Fixture:
    ids = catalog_ids()
    zendesk, basic = ids["zendesk"], ids["http-basic-auth"]
    users, tokens = {}, {}
    for role in ["page", "create", "instance", "big"]:
        data = graphql(
            base,
            master,
            "mutation ($input: CreateExternalUserInput!) { createExternalUser(input: $input) { userId } }",
            {"input": {"name": f"Bench {role.title()} User", "externalUserId": f"bench-{role}-{uuid.uuid4()}"}},
        )
        users[role] = data["createExternalUser"]["userId"]
        data = graphql(
            base, master, "mutation ($id: ID!) { authorize(input: {userId: $id}) { accessToken } }", {"id": users[role]}
        )
        tokens[role] = data["authorize"]["accessToken"]

    def import_auth(role: str, service: tuple, name: str, data: dict, form: dict) -> str:
        answer = graphql(
            base,
            tokens[role],
            CREATE_AUTH,
            {"input": {"name": name, "serviceId": service[0], "serviceEnvironmentId": service[1],
                       "data": data, "formData": form}},
        )
        return answer["createUserAuthentication"]["authenticationId"]

    small = {"email": "ann@acme.test", "api_token": "6wiIBWbGkBMo1mRD"}
    log(f"importing {rows} authentications through latchkey's API")
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: import_auth("page", zendesk, f"Zendesk {i}", small, {"subdomain": "acme"}),
                      range(rows)))
    log(f"imported in {time.monotonic() - started:.1f} s")
    big_template = import_auth("big", zendesk, "Zendesk template", small, {"subdomain": "acme"})
    instance_zendesk = import_auth("instance", zendesk, "Zendesk", small, {"subdomain": "acme"})
    instance_basic = import_auth(
        "instance", basic, "Basic", {"username": "api-user", "password": "s3cr3t"},
        {"base_url": "https://api.example.com/v1"},
    )
    data = graphql(
        base,
        master,
        "mutation ($input: CreateSolutionInput!) { createSolution(input: $input) { solution { id } } }",
        {"input": {
            "title": "Bench sync",
            "authSlots": [
                {"externalId": "zendesk_auth", "title": "Zendesk", "serviceId": zendesk[0], "required": True},
                {"externalId": "basic_auth", "title": "Basic", "serviceId": basic[0], "required": True},
            ],
            "configSlots": [
                {"externalId": "batch_size", "title": "Batch size", "valueType": "NUMBER", "defaultValue": "50"},
                {"externalId": "region", "title": "Region", "valueType": "STRING"},
            ],
            "workflows": [{"name": "Sync"}],
        }},
    )
    solution = data["createSolution"]["solution"]["id"]
    graphql(base, master, "mutation ($id: ID!) { publishSolution(input: {solutionId: $id}) { solution { version } } }",
            {"id": solution})

    bodies = {
        "typename": {"query": "{ __typename }"},
        "trivial": {"query": "{ viewer { details { name } } }"},
        "page": {"query": PAGE_QUERY, "variables": {"after": None}},
        "create": {"query": CREATE_AUTH, "variables": {"input": {
            "name": "Bench import", "serviceId": zendesk[0], "serviceEnvironmentId": zendesk[1],
            "data": zendesk_credentials(1024), "formData": {"subdomain": "acme"},
        }}},
        "instance": {
            "query": "mutation Instance($input: CreateSolutionInstanceInput!) "
                     "{ createSolutionInstance(input: $input) { solutionInstance { id name enabled } } }",
            "variables": {"input": {
                "solutionId": solution,
                "instanceName": "Bench instance",
                "authValues": [
                    {"externalId": "zendesk_auth", "authId": instance_zendesk},
                    {"externalId": "basic_auth", "authId": instance_basic},
                ],
                "configValues": [{"externalId": "batch_size", "value": "50"}, {"externalId": "region", "value": "eu"}],
            }},
        },
    }
    paths = {}
    for name, body in bodies.items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(body))
        paths[name] = path
    return Fixture(master, users, tokens, paths, solution, big_template)


def page_body(folder: Path, name: str, cursor: str) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"query": PAGE_QUERY, "variables": {"after": cursor}}))
    return path


def cursor(row_id: str) -> str:
    return base64.b64encode(row_id.encode()).decode()


# --------------------------------------------------------------------------------------
# databases

class Database:
    kind: str

    def latchkey_url(self) -> str | None: ...
    def tools_url(self) -> str: ...
    def middle_id(self, owner: str, offset: int) -> str: ...
    def statements_begin(self) -> None: ...
    def statements_end(self) -> None: ...
    def drop(self) -> None: ...
    def after_seed(self) -> None: ...


class Sqlite(Database):
    kind = "sqlite"

    def __init__(self, data_dir: Path):
        self.path = data_dir / "latchkey.db"

    def latchkey_url(self) -> str | None:
        return None  # latchkey's default: the SQLite file in its data dir

    def tools_url(self) -> str:
        return f"sqlite://{self.path}"

    def middle_id(self, owner: str, offset: int) -> str:
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as db:
            row = db.execute(
                "SELECT id FROM authentications WHERE owner_user_id = ? ORDER BY id LIMIT 1 OFFSET ?",
                (uuid.UUID(owner).bytes, offset),
            ).fetchone()
        return str(uuid.UUID(bytes=row[0]))

    def drop(self) -> None:
        # The database is large after the growth check; the run folder keeps the logs.
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)


class Postgres(Database):
    kind = "postgres"

    def __init__(self, admin: str, name: str):
        self.admin, self.name = admin, name
        self.url = re.sub(r"/[^/?]*(\?|$)", f"/{name}\\1", admin.split("://", 1)[1], count=1)
        self.url = admin.split("://", 1)[0] + "://" + self.url
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', admin=True)
        self.psql(f'CREATE DATABASE "{name}"', admin=True)

    def psql(self, sql: str, admin: bool = False) -> str:
        url = self.admin if admin else self.url
        done = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def latchkey_url(self) -> str | None:
        return self.url

    def tools_url(self) -> str:
        return self.url

    def middle_id(self, owner: str, offset: int) -> str:
        return self.psql(
            f"SELECT id FROM authentications WHERE owner_user_id = '{owner}' ORDER BY id LIMIT 1 OFFSET {offset}"
        )

    def after_seed(self) -> None:
        # Fresh planner statistics now, rather than autovacuum's analyze in the middle of a run.
        self.psql("ANALYZE authentications")

    def drop(self) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)', admin=True)


# --------------------------------------------------------------------------------------
# one database's part of the run

class Phase:
    def __init__(self, settings: Settings, kind: str, folder: Path):
        self.s, self.kind, self.folder = settings, kind, folder
        folder.mkdir(parents=True, exist_ok=True)
        self.key = base64.b64encode(secrets.token_bytes(32)).decode()
        self.jwt_secret = base64.b64encode(secrets.token_bytes(48)).decode()
        self.data_dir = folder / "latchkey-data"
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.db: Database = (
            Sqlite(self.data_dir) if kind == "sqlite"
            else Postgres(settings.postgres_admin, "latchkey_bench")
        )
        self.ports = {"latchkey": free_port(), "baseline": free_port(), "peer": free_port()}
        self.issuer = f"http://127.0.0.1:{self.ports['latchkey']}"
        self.servers: dict[str, Server] = {}
        self.result: dict = {"runs": [], "memory": {}, "statements": {}, "growth": [], "notes": []}

    # servers ---------------------------------------------------------------------------

    def server(self, name: str) -> Server:
        env = dict(os.environ)
        if name == "latchkey":
            env.update({
                "LATCHKEY_BIND": f"127.0.0.1:{self.ports['latchkey']}",
                "LATCHKEY_PUBLIC_URL": self.issuer,
                "LATCHKEY_DATA_DIR": str(self.data_dir),
                "LATCHKEY_ENCRYPTION_KEY": self.key,
                "LATCHKEY_JWT_SECRET": self.jwt_secret,
                "LATCHKEY_RATE_LIMIT_PER_SECOND": "0",
            })
            if self.db.latchkey_url():
                env["LATCHKEY_DATABASE_URL"] = self.db.latchkey_url()
            argv, health = [str(self.s.latchkey), "serve"], "/healthz"
        elif name == "baseline":
            env.update({
                "BASELINE_BIND": f"127.0.0.1:{self.ports['baseline']}",
                "BASELINE_DATABASE_URL": self.db.tools_url(),
                "BASELINE_JWT_SECRET": self.jwt_secret,
                "BASELINE_ISSUER": self.issuer,
                "BASELINE_ENCRYPTION_KEY": self.key,
            })
            argv, health = [str(self.s.tools / "baseline")], "/healthz"
        else:
            env.update({
                "PEER_BIND": f"127.0.0.1:{self.ports['peer']}",
                "PEER_DATABASE_URL": self.db.tools_url(),
                "PEER_JWT_SECRET": self.jwt_secret,
                "PEER_ISSUER": self.issuer,
                "PEER_ENCRYPTION_KEY": self.key,
                "NODE_ENV": "production",
            })
            argv, health = ["node", str(BENCH / "peers" / "yoga" / "server.mjs")], "/health"
        return Server(name, argv, env, self.ports[name], health, self.s.server_cpu, self.folder / f"{name}.log")

    def names(self) -> list[str]:
        return ["latchkey", "baseline"] + (["peer"] if self.kind == "postgres" else [])

    def start_all(self) -> None:
        for name in self.names():
            self.servers[name] = self.server(name)
            self.servers[name].start()

    def stop_all(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers = {}

    def url(self, server: str, workload: Workload) -> str:
        if server == "latchkey" or server == "peer":
            return f"http://127.0.0.1:{self.ports[server]}/graphql"
        return f"http://127.0.0.1:{self.ports['baseline']}/{workload.baseline}"

    # load ------------------------------------------------------------------------------

    def loadgen(self, url: str, body: Path, token: str, *, connections: int, duration: float | None = None,
                warmup: float = 0.0, rate: float | None = None, requests: int | None = None) -> dict:
        argv = [str(self.s.tools / "loadgen"), "--url", url, "--body", str(body), "--graphql",
                "--header", f"Authorization: Bearer {token}", "--connections", str(connections),
                "--warmup", str(warmup)]
        if duration is not None:
            argv += ["--duration", str(duration)]
        if rate is not None:
            argv += ["--rate", f"{rate:.1f}", "--arrivals", self.s.arrivals]
        if requests is not None:
            argv += ["--requests", str(requests)]
        done = subprocess.run(pinned(self.s.loadgen_cpu, argv), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"loadgen failed: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def measure(self, server: str, workload: Workload, mode: str, rep: int, *, connections: int,
                rate: float | None = None, body: Path | None = None, user: str | None = None) -> dict:
        process = self.servers[server]
        load = loadavg()
        process.reset_peak()
        result = self.loadgen(
            self.url(server, workload), body or self.fixture.bodies[workload.name],
            self.fixture.tokens[user or workload.user], connections=connections,
            duration=self.s.duration, warmup=self.s.warmup, rate=rate,
        )
        run = {"server": server, "workload": workload.name, "mode": mode, "rep": rep, "loadavg": load,
               "peak_rss_kb": process.peak_kb(), **result}
        self.result["runs"].append(run)
        failures = f", {result['failed']} failed" if result["failed"] else ""
        log(f"  {self.kind} {workload.name:8} {mode:>5} #{rep} {server:8} {result['rps']:9.0f} req/s  "
            f"p50 {result['latency_ms']['p50']:.2f} ms  p99 {result['latency_ms']['p99']:.2f} ms{failures}  "
            f"(load {load:.2f})")
        return run

    # the phase -------------------------------------------------------------------------

    def run(self) -> dict:
        started = time.monotonic()
        log(f"== {self.kind}: preparing latchkey's database")
        latchkey = self.server("latchkey")
        latchkey.start()
        self.servers["latchkey"] = latchkey
        token_file = self.data_dir / "initial-master-token"
        master = token_file.read_text().strip()
        token_file.unlink()
        self.fixture = setup(latchkey.base, master, self.s.rows, self.folder)
        self.stop_all()

        self.count_statements()

        log(f"== {self.kind}: starting the servers")
        self.start_all()
        time.sleep(2)
        self.result["memory"]["idle_kb"] = {name: server.rss_kb() for name, server in self.servers.items()}

        workloads = [w for w in WORKLOADS if w.name in self.s.workloads]
        for workload in workloads:
            servers = [n for n in self.names() if n != "peer" or workload.peer]
            saturation: dict[str, float] = {}
            for connections in self.s.connections:
                mode = f"c{connections}"
                for rep in range(1, self.s.repeats + 1):
                    for server in servers:
                        self.measure(server, workload, mode, rep, connections=connections)
            for server in servers:
                medians = [
                    statistics.median(r["rps"] for r in self.result["runs"]
                                      if r["server"] == server and r["workload"] == workload.name
                                      and r["mode"] == f"c{c}")
                    for c in self.s.connections
                ]
                saturation[server] = max(medians)
            for rep in range(1, self.s.repeats + 1):
                for server in servers:
                    if saturation[server] > 0:
                        self.measure(server, workload, "rate", rep, connections=self.s.rate_connections,
                                     rate=saturation[server] / 2)

        self.profile()
        self.growth()
        self.stop_all()
        self.db.drop()
        self.result["seconds"] = time.monotonic() - started
        return self.result

    # where the time goes ------------------------------------------------------------------

    def profile(self) -> None:
        """latchkey's CPU by thread and by crate, sampled with perf at 8 connections for each
        workload: what a missed target costs where. Skipped, with a note, without perf."""
        if not perf_works():
            self.result["notes"].append("perf cannot sample here: no profiles.")
            return
        log(f"== {self.kind}: profiling latchkey")
        self.result["profiles"] = {}
        for workload in [w for w in WORKLOADS if w.name in self.s.workloads]:
            data = self.folder / f"perf-{self.kind}-{workload.name}.data"
            pid = self.servers["latchkey"].process.pid
            perf = subprocess.Popen(
                ["perf", "record", "-F", "999", "-p", str(pid), "-o", str(data), "--", "sleep",
                 str(self.s.warmup + self.s.duration)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            result = self.loadgen(self.url("latchkey", workload), self.fixture.bodies[workload.name],
                                  self.fixture.tokens[workload.user], connections=8,
                                  duration=self.s.duration, warmup=self.s.warmup)
            perf.wait()
            self.result["profiles"][workload.name] = {"rps": result["rps"], **perf_summary(data)}
            data.unlink(missing_ok=True)

    # statements per request --------------------------------------------------------------

    def count_statements(self) -> None:
        log(f"== {self.kind}: counting statements per request")
        workloads = [w for w in WORKLOADS if w.name in self.s.workloads]
        if self.kind == "postgres":
            logfile = self.postgres_log()
            if not logfile:
                self.result["notes"].append("PostgreSQL's server log was not found: no statement counts.")
                return
            self.db.psql(f'ALTER DATABASE "{self.db.name}" SET log_statement = \'all\'', admin=True)
            try:
                self.start_all()
                for workload in workloads:
                    for name in self.names():
                        if name == "peer" and not workload.peer:
                            continue
                        self.result["statements"].setdefault(workload.name, {})[name] = \
                            self.count_postgres(logfile, name, workload)
            finally:
                self.stop_all()
                self.db.psql(f'ALTER DATABASE "{self.db.name}" RESET log_statement', admin=True)
        else:
            if not shutil.which("gdb") or platform.machine() != "x86_64":
                self.result["notes"].append("SQLite statements are counted with gdb on x86_64 only: no counts.")
                return
            self.start_all()
            try:
                for workload in workloads:
                    for name in self.names():
                        self.result["statements"].setdefault(workload.name, {})[name] = \
                            self.count_sqlite(name, workload)
            finally:
                self.stop_all()

    def postgres_log(self) -> Path | None:
        if self.s.postgres_log:
            return Path(self.s.postgres_log)
        candidates = sorted(Path("/var/log/postgresql").glob("postgresql-*-main.log"))
        return candidates[-1] if candidates else None

    def count_requests(self, name: str, workload: Workload, requests: int) -> dict:
        return self.loadgen(self.url(name, workload), self.fixture.bodies[workload.name],
                            self.fixture.tokens[workload.user], connections=1, requests=requests)

    def count_postgres(self, logfile: Path, name: str, workload: Workload) -> dict:
        self.count_requests(name, workload, 5)  # warm: prepared statements, pool connections
        time.sleep(0.5)
        started = time.monotonic()
        start = logfile.stat().st_size
        result = self.count_requests(name, workload, self.s.statement_requests)
        time.sleep(1.0)
        statements = self.postgres_statements(logfile, start)
        # The same time again without requests: what the servers' own timers ran.
        window = time.monotonic() - started
        start = logfile.stat().st_size
        time.sleep(window)
        idle = self.postgres_statements(logfile, start)
        return self.per_request(statements, result, idle=idle, window=window)

    def postgres_statements(self, logfile: Path, start: int) -> dict[str, int]:
        with open(logfile, "rb") as log_file:
            log_file.seek(start)
            text = log_file.read().decode(errors="replace")
        pattern = re.compile(r"@" + re.escape(self.db.name) + r" LOG:  (?:statement|execute [^:]*): (.*)")
        statements: dict[str, int] = {}
        for line in text.splitlines():
            match = pattern.search(line)
            if match:
                sql = " ".join(match.group(1).split())
                statements[sql] = statements.get(sql, 0) + 1
        return statements

    def count_sqlite(self, name: str, workload: Workload) -> dict:
        self.count_requests(name, workload, 5)
        counted = self.sqlite_window(name, lambda: self.count_requests(name, workload, self.s.statement_requests))
        if "error" in counted:
            return counted
        # The same time again without requests: what the server's own timers ran.
        window = counted["window"]
        idle = self.sqlite_window(name, lambda: time.sleep(max(window - 1.5, 0.0)))
        if "error" in idle:
            return idle
        counts, result = counted["counts"], counted["result"]
        return self.per_request(counts["statements"], result, counts.get("reprepares"),
                                idle=idle["counts"]["statements"], window=window)

    def sqlite_window(self, name: str, run) -> dict:
        """Counts the statements a server runs while `run` runs (and 1.5 s around it), with
        gdb attached; the window is the time counted."""
        out = self.folder / f"statements-{name}.json"
        ready = Path(str(out) + ".ready")
        for stale in (out, ready):
            stale.unlink(missing_ok=True)
        env = dict(os.environ, SQLITE_STATEMENTS_OUT=str(out))
        gdb = subprocess.Popen(
            ["gdb", "-nx", "-batch", "-p", str(self.servers[name].process.pid), "-x",
             str(BENCH / "sqlite_statements.py")],
            env=env, stdout=subprocess.DEVNULL, stderr=open(self.folder / "gdb.log", "ab"),
        )
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline and gdb.poll() is None:
            time.sleep(0.1)
        if not ready.exists():
            gdb.kill()
            return {"error": "gdb did not attach"}
        started = time.monotonic()
        time.sleep(1.0)
        result = run()
        time.sleep(0.5)
        window = time.monotonic() - started
        gdb.send_signal(signal.SIGINT)
        try:
            gdb.wait(timeout=60)
        except subprocess.TimeoutExpired:
            gdb.kill()
        if not out.exists():
            return {"error": "gdb wrote no counts"}
        ready.unlink(missing_ok=True)
        counts = json.loads(out.read_text())
        # The attached server is no longer fit for timing: restart it.
        self.servers[name].stop()
        self.servers[name] = self.server(name)
        self.servers[name].start()
        return {"counts": counts, "result": result, "window": window}

    def per_request(self, statements: dict[str, int], result: dict, reprepares: dict | None = None,
                    idle: dict[str, int] | None = None, window: float = 0.0) -> dict:
        """Statements per request. What the server ran in an equal window without requests
        (its timers: webhook deliveries, refreshes, the revocation epoch) is taken off, each
        statement text at most as often as it was counted, and reported apart."""
        requests = result["ok"] + result["failed"]
        idle = idle or {}
        background = {sql: min(n, statements.get(sql, 0)) for sql, n in idle.items() if statements.get(sql)}
        caused = {sql: n - background.get(sql, 0) for sql, n in statements.items() if n > background.get(sql, 0)}

        def each(table: dict[str, int]) -> dict[str, float]:
            return {sql: n / requests for sql, n in sorted(table.items(), key=lambda kv: -kv[1])} if requests else {}

        return {
            "requests": requests,
            "failed": result["failed"],
            "per_request": sum(caused.values()) / requests if requests else None,
            "statements": each(caused),
            "background": {"window_s": round(window, 1), "idle": idle, "taken_off": sum(background.values())},
            "reprepares_per_request": sum(reprepares.values()) / requests if requests and reprepares is not None
            else None,
            "reprepares": each(reprepares or {}),
        }

    # growth ----------------------------------------------------------------------------

    def growth(self) -> None:
        """Page latency at `rows` and at `rows_large` rows: one connection, a page from the
        middle of the end user's authentications (a cursor there), interleaved runs."""
        servers = self.names()
        small_id = self.db.middle_id(self.fixture.users["page"], self.s.rows // 2)
        small = page_body(self.folder, "page-middle-small", cursor(small_id))
        self.page_latency(servers, small, "page", self.s.rows)
        self.stop_all()
        log(f"== {self.kind}: seeding {self.s.rows_large} rows")
        seeded = time.monotonic()
        subprocess.run([str(self.s.tools / "seed"), "--db", self.db.tools_url(), "--template",
                        self.fixture.big_template, "--owner", self.fixture.users["big"],
                        "--count", str(self.s.rows_large - 1)], check=True)
        self.db.after_seed()
        self.result["seed_seconds"] = time.monotonic() - seeded
        large_id = self.db.middle_id(self.fixture.users["big"], self.s.rows_large // 2)
        large = page_body(self.folder, "page-middle-large", cursor(large_id))
        self.start_all()
        self.page_latency(servers, large, "big", self.s.rows_large)

    def page_latency(self, servers: list[str], body: Path, user: str, rows: int) -> None:
        log(f"== {self.kind}: page latency at {rows} rows")
        page = next(w for w in WORKLOADS if w.name == "page")
        for rep in range(1, self.s.repeats + 1):
            for server in servers:
                run = self.measure(server, page, "c1", rep, connections=1, body=body, user=user)
                run["workload"] = "growth"
                run["rows"] = rows


# --------------------------------------------------------------------------------------

def machine() -> dict:
    info = {"kernel": platform.release(), "cores": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
        info["cpu"] = model.group(1).strip() if model else platform.processor()
        mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
        info["memory_gib"] = round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None
    except OSError:
        pass
    for key, argv in {
        "rustc": ["rustc", "--version"],
        "node": ["node", "--version"],
        "postgres": ["psql", "--version"],
        "commit": ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        "os": ["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"],
    }.items():
        try:
            info[key] = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            info[key] = None
    lock = (ROOT / "Cargo.lock").read_text()
    for crate in ["sqlx", "sea-orm", "libsqlite3-sys", "axum", "async-graphql"]:
        match = re.search(rf'name = "{re.escape(crate)}"\nversion = "([^"]+)"', lock)
        info[crate] = match.group(1) if match else None
    return info


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latchkey", required=True, type=Path, help="latchkey's release binary")
    parser.add_argument("--tools", required=True, type=Path, help="folder of the bench crate's release binaries")
    parser.add_argument("--command", default="bench/run", help="the command, as the report shows it")
    args = parser.parse_args()
    # The settings this run was given, as part of its command (an admin URL may hold a password).
    given = [f"{k}={v}" for k, v in sorted(os.environ.items())
             if k.startswith("BENCH_") and k != "BENCH_POSTGRES_URL" and v.strip()]
    command = " ".join([*given, args.command])
    settings = Settings(latchkey=args.latchkey, tools=args.tools)
    if (os.cpu_count() or 1) < 2:
        log("fewer than 2 cores: server and load generator share one (no pinning)")
        settings.server_cpu = settings.loadgen_cpu = "none"

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = BENCH / "runs" / stamp
    folder.mkdir(parents=True)
    log(f"run folder {folder.relative_to(ROOT)}; {'SMOKE RUN' if settings.smoke else 'full run'}")
    results = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "smoke": settings.smoke,
        "settings": {k: v for k, v in vars(settings).items() if k not in ("latchkey", "tools", "postgres_admin")},
        "machine": machine(),
        "databases": {},
    }
    started = time.monotonic()
    for kind in settings.databases:
        phase = Phase(settings, kind, folder / kind)
        try:
            results["databases"][kind] = phase.run()
        finally:
            phase.stop_all()
            phase.db.drop()
        (folder / "results.json").write_text(json.dumps(results, indent=1))
    results["seconds"] = time.monotonic() - started
    (folder / "results.json").write_text(json.dumps(results, indent=1))
    log(f"results in {(folder / 'results.json').relative_to(ROOT)}")
    # A shortened run reports into its own folder, never over the committed BENCHMARKS.md.
    out = folder if settings.smoke else BENCH
    report = [sys.executable, str(BENCH / "report.py"), str(folder / "results.json"),
              "--markdown", str(out / "BENCHMARKS.md"), "--plot", str(out / "benchmarks.png")]
    return subprocess.run(report).returncode


if __name__ == "__main__":
    sys.exit(main())
