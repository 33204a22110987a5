"""Create (or update) the Prefect automations of infra/automations.yaml: notify on failed, crashed or
timed-out flow runs of the svd deployments (every deployment in prefect.yaml carries the `svd` tag).

    .venv/bin/python infra/create_automations.py --webhook-url https://hooks.slack.com/services/...
    .venv/bin/python infra/create_automations.py --block custom-webhook/ops-pager   # an existing block

The notification goes to a Prefect notification block: `--webhook-url` saves a Slack webhook block named
`svd-alerts` (any Slack-compatible URL: Slack, Mattermost, Rocket.Chat); `--block TYPE/NAME` uses one that
exists (email, PagerDuty, Teams, ... made in the Prefect UI). Needs PREFECT_API_URL (or the active profile).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import yaml

SPEC = Path(__file__).with_name("automations.yaml")
BLOCK_NAME = "svd-alerts"


async def _block_id(webhook_url: str | None, block: str | None) -> str:
    if block:
        from prefect.blocks.core import Block

        return str((await Block.aload(block)).block_document_id)  # type: ignore[union-attr]
    from prefect.blocks.notifications import SlackWebhook

    saved = await SlackWebhook(url=webhook_url).save(BLOCK_NAME, overwrite=True)  # type: ignore[arg-type]
    return str(saved)


def automations(block_id: str) -> list[dict[str, Any]]:
    """The automations of infra/automations.yaml with the notification block filled in."""
    specs: list[dict[str, Any]] = yaml.safe_load(SPEC.read_text())["automations"]
    for spec in specs:
        for action in spec["actions"]:
            if action["type"] == "send-notification":
                action["block_document_id"] = block_id
    return specs


async def main(webhook_url: str | None, block: str | None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    block_id = await _block_id(webhook_url, block)
    async with get_client() as client:
        for spec in automations(block_id):
            automation = AutomationCore.model_validate(spec)
            for old in await client.read_automations_by_name(automation.name):
                await client.delete_automation(old.id)  # idempotent: rerun after editing the YAML
            print(f"automation {automation.name}: {await client.create_automation(automation)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--webhook-url", help="Slack-compatible incoming webhook URL (saved as block svd-alerts)."
    )
    target.add_argument("--block", help="An existing notification block, TYPE/NAME (e.g. email/ops).")
    cli = parser.parse_args()
    asyncio.run(main(cli.webhook_url, cli.block))
