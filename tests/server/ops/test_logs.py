"""Logs: JSON lines in production mode, run and connection context bound, one line per connect and disconnect."""

from __future__ import annotations


async def test_json_logs_bind_run_and_connection_context(make_server):
    srv = make_server({"RUNWATCH_LOG_FORMAT": "json", "RUNWATCH_LOG_LEVEL": "debug"})  # (connects are debug lines)
    w = await srv.watcher()
    run = await srv.start_run("what is 5*5?")
    await w.subscribe(run)
    await w.until_finished(run)
    await w.close()
    await srv.start_run({"tokens": 1})  # a later request: the disconnect line is written by now
    srv.stop()
    lines = srv.log_lines()
    assert lines and all({"event", "level", "timestamp"} <= set(line) for line in lines)
    runs = [line for line in lines if line["event"] in ("run.started", "run.finished") and line.get("run_id") == run]
    assert {line["event"] for line in runs} == {"run.started", "run.finished"}
    assert all(line["agent"] == "demo" for line in runs)
    connected = [line for line in lines if line["event"] == "ws.connected"]
    disconnected = [line for line in lines if line["event"] == "ws.disconnected"]
    assert len(connected) == len(disconnected) == 1
    assert connected[0]["conn"] == disconnected[0]["conn"]
    assert disconnected[0]["code"] == 1000 and disconnected[0]["duration"] > 0 and disconnected[0]["events"] > 0


async def test_console_logs_for_development(make_server):
    srv = make_server({"RUNWATCH_LOG_FORMAT": "console"})
    srv.stop()
    text = srv.logs()
    assert "runwatch.ready" in text and "url=http://127.0.0.1:" in text and not text.lstrip().startswith("{")


async def test_a_watcher_coming_and_going_adds_no_line_at_info_level(make_server):
    srv = make_server({"RUNWATCH_LOG_FORMAT": "json"})  # the default level, info
    w = await srv.watcher()
    run = await srv.start_run({"tokens": 3})
    await w.subscribe(run)
    await w.until_finished(run)
    await w.close()
    srv.stop()  # every line is written by now
    events = [line["event"] for line in srv.log_lines()]
    assert "run.finished" in events and not [e for e in events if e.startswith("ws.")], events
