"""The same enrollment flow in the web chat, in English: apply, see the fee, withdraw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.school import parent_code
from tests.test_webchat import TIMEOUT, live_app, open_chat, say


async def press(ws: aiohttp.ClientWebSocketResponse, payload: str) -> dict[str, Any]:
    await ws.send_json({"type": "button", "payload": payload})
    return await ws.receive_json(timeout=TIMEOUT)


def payloads(frame: dict[str, Any]) -> list[str]:
    return [b["payload"] for row in frame["buttons"] for b in row if b.get("payload")]


async def test_a_parent_applies_and_withdraws_in_the_web_chat(tmp_path: Path) -> None:
    async with live_app(tmp_path, demo=False) as app:
        browser = app.browser()
        async with await open_chat(app, browser) as ws:
            await say(ws, "/lang")
            await press(ws, "l:en")
            code = await parent_code(app.sessionmaker, "S2026104", notice_accepted=True)
            bound = await say(ws, f"/start {code}")
            assert "董子轩" in bound["text"]

            step = await say(ws, "/apply")
            assert "Step 1" in step["text"] and "a:d:mon" in payloads(step)
            await press(ws, "a:d:mon")  # untick Monday: four days
            for payload in ("a:n", "a:n", "a:n", "a:n"):
                step = await press(ws, payload)
            summary = await press(ws, "a:w:n")
            assert "Tue, Wed, Thu, Fri" in summary["text"] and "Total for" in summary["text"]
            assert "submitted" in (await press(ws, "a:ok"))["text"]

            status = await say(ws, "/status")
            assert "waiting for class review" in status["text"]
            choose = await say(ws, "/withdraw")
            confirm = await press(ws, payloads(choose)[0])
            done = await press(ws, next(p for p in payloads(confirm) if p.startswith("w:y:")))
            assert "has left the after-school service" in done["text"]
