# SQLite's own count of the statements a process runs, read from outside the process.
#
# SQLite is compiled into latchkey and the baseline (sqlx bundles it), so no log outside
# the process sees their statements. This gdb script attaches to the running server and
# counts executions at SQLite's C API. Nothing in the server changes. x86_64 only (the
# arguments are read from their registers).
#
# - A prepared statement's execution is its first `sqlite3_step` since it was prepared or
#   reset (`sqlite3_reset`, `sqlite3_finalize`), or a step that restarts a finished
#   statement (SQLite then resets it from inside `sqlite3_step`).
# - A re-prepare (a statement SQLite found expired: it compiles it again and resets it from
#   inside the same `sqlite3_step`) is counted apart, as `reprepares`.
# - `sqlite3_exec` (sqlx runs BEGIN, COMMIT and ROLLBACK through it) counts each statement
#   of its text once; the steps it makes inside are not counted again.
#
#   SQLITE_STATEMENTS_OUT=counts.json gdb -p PID -batch -x bench/sqlite_statements.py
#
# The script writes `<out>.ready` once its breakpoints are set, counts until gdb receives
# SIGINT, then writes {"total": n, "statements": {sql: n}, "reprepares": {sql: n}} to <out> and
# detaches.
#
# The breakpoints never call into the process (a call from a breakpoint leaves it stopped):
# the SQL of a statement is read from the statement's own memory. Its `zSql` field (the
# text as prepared, which SQLite keeps for re-preparing) sits at an offset that depends on
# SQLite's version and build, so the script finds it on the first statement: the pointer
# field that points at text starting with an SQL keyword.

import json
import os

import gdb

OUT = os.environ["SQLITE_STATEMENTS_OUT"]
KEYWORDS = (b"SELECT", b"INSERT", b"UPDATE", b"DELETE", b"BEGIN", b"COMMIT", b"ROLLBACK", b"END", b"WITH",
            b"PRAGMA", b"SAVEPOINT", b"RELEASE", b"CREATE", b"DROP", b"ALTER", b"REPLACE", b"ANALYZE", b"VACUUM")

counts = {}
reprepares = {}
running = set()
sql_of = {}
sql_offset = []
# The statement each thread is stepping, and whether that step was counted.
stepping = {}
memory = gdb.selected_inferior()


def register(name):
    return int(gdb.parse_and_eval("(unsigned long)$" + name))


def pointer(address):
    return int.from_bytes(bytes(memory.read_memory(address, 8)), "little")


def c_string(address, limit=4096):
    text = b""
    while len(text) < limit:
        chunk = bytes(memory.read_memory(address + len(text), 64))
        end = chunk.find(b"\0")
        if end >= 0:
            return text + chunk[:end]
        text += chunk
    return text


def bounds(function):
    """The address range of a function, from its disassembly (no debug information needed)."""
    lines = gdb.execute("disassemble " + function, to_string=True).splitlines()
    addresses = [int(line.split()[0 if not line.startswith("=>") else 1], 16)
                 for line in lines if line.strip().startswith(("0x", "=> 0x"))]
    return min(addresses), max(addresses) + 1


def caller():
    """The return address of the function a breakpoint at its first instruction stopped in."""
    return pointer(register("rsp"))


def sql_at(stmt, offset):
    try:
        address = pointer(stmt + offset)
        return c_string(address) if address else None
    except gdb.MemoryError:
        return None


def statement_text(stmt):
    if stmt in sql_of:
        return sql_of[stmt]
    if not sql_offset:
        for offset in range(0, 1024, 8):
            text = sql_at(stmt, offset)
            if text and text.lstrip().upper().startswith(KEYWORDS):
                sql_offset.append(offset)
                break
    text = sql_at(stmt, sql_offset[0]) if sql_offset else None
    sql_of[stmt] = tidy(text) if text else "?"
    return sql_of[stmt]


def tidy(text):
    return " ".join(text.decode(errors="replace").split())[:400]


def add(table, text):
    table[text] = table.get(text, 0) + 1


def thread():
    return gdb.selected_thread().ptid


STEP = bounds("sqlite3_step")
EXEC = bounds("sqlite3_exec")


class Step(gdb.Breakpoint):
    def stop(self):
        if EXEC[0] <= caller() < EXEC[1]:
            return False
        stmt = register("rdi")
        counted = stmt not in running
        if counted:
            running.add(stmt)
            add(counts, statement_text(stmt))
        stepping[thread()] = (stmt, counted)
        return False


class Reset(gdb.Breakpoint):
    def stop(self):
        stmt = register("rdi")
        if STEP[0] <= caller() < STEP[1]:
            current, counted = stepping.get(thread(), (None, False))
            if current == stmt and counted:
                add(reprepares, statement_text(stmt))  # compiled again within this execution
            elif current == stmt:
                add(counts, statement_text(stmt))  # a finished statement stepped again: a new execution
                stepping[thread()] = (stmt, True)
            return False
        running.discard(stmt)
        return False


class Finalize(gdb.Breakpoint):
    def stop(self):
        stmt = register("rdi")
        running.discard(stmt)
        sql_of.pop(stmt, None)
        return False


class Exec(gdb.Breakpoint):
    def stop(self):
        try:
            text = c_string(register("rsi")).decode(errors="replace")
        except gdb.MemoryError:
            text = "?"
        for statement in filter(None, (part.strip() for part in text.split(";"))):
            add(counts, " ".join(statement.split())[:400])
        return False


gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute("handle SIGPIPE nostop noprint pass")
# At the first instruction (`*`), so the return address is on top of the stack.
Step("*sqlite3_step", internal=True)
Reset("*sqlite3_reset", internal=True)
Finalize("*sqlite3_finalize", internal=True)
Exec("*sqlite3_exec", internal=True)
with open(OUT + ".ready", "w") as ready:
    ready.write("ready\n")
try:
    gdb.execute("continue")
except (gdb.error, KeyboardInterrupt):
    pass
with open(OUT, "w") as out:
    json.dump({"total": sum(counts.values()), "statements": counts, "reprepares": reprepares}, out, indent=1)
gdb.execute("detach")
