"""Conversation state per account, in the database so a restart or another worker can go on."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ConversationState


async def get_state(session: AsyncSession, account_id: int) -> ConversationState | None:
    return await session.get(ConversationState, account_id)


async def set_state(
    session: AsyncSession, account_id: int, flow: str, step: str, data: dict[str, Any] | None = None
) -> ConversationState:
    state = await session.get(ConversationState, account_id)
    if state is None:
        state = ConversationState(account_id=account_id, flow=flow, step=step, data=data or {})
        session.add(state)
    else:
        state.flow, state.step, state.data = flow, step, dict(data or {})
    await session.flush()
    return state


async def clear_state(session: AsyncSession, account_id: int) -> bool:
    state = await session.get(ConversationState, account_id)
    if state is None:
        return False
    await session.delete(state)
    await session.flush()
    return True
