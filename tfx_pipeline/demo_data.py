"""The project's own small demo dataset, written deterministically.

Two tasks, a few hundred rows each, small enough for the quick start and the
tests, and with a handful of deliberately bad rows so the quick start shows
quarantine at work:

- `intent.csv` (`text,category`): 8 Banking77 customer-service intents.
- `sentiment.jsonl` (`id, headline, sentiment, agreement`): financial news
  headlines labelled positive / neutral / negative, Financial PhraseBank style.

Example:

>>> import tempfile, pathlib
>>> paths = write_demo_data(pathlib.Path(tempfile.mkdtemp()))
>>> sorted(p.name for p in paths.values())
['intent.csv', 'sentiment.jsonl']
"""

from __future__ import annotations

import csv
import itertools
import json
import random
from pathlib import Path

INTENT_TEMPLATES = {
    "card_arrival": ["{pre}my new card still hasn't arrived", "{pre}when will my card arrive",
                     "{pre}I ordered a card {when} and it is not here yet", "{pre}where is the card you sent me"],
    "lost_or_stolen_card": ["{pre}I lost my card {when}", "{pre}my card was stolen {when}",
                            "{pre}someone took my wallet with my card", "{pre}I can't find my bank card anywhere"],
    "exchange_rate": ["{pre}what exchange rate do you use", "{pre}how much is one euro in dollars today",
                      "{pre}what is the rate for converting pounds", "{pre}is your currency rate fair"],
    "declined_card_payment": ["{pre}my card payment was declined {when}", "{pre}the shop refused my card {when}",
                              "{pre}why did my card get rejected at the store", "{pre}payment with my card failed"],
    "transfer_not_received_by_recipient": ["{pre}my friend did not get the money I sent {when}",
                                           "{pre}the transfer never reached the recipient",
                                           "{pre}I sent money but they say nothing arrived",
                                           "{pre}where is the transfer I made to my landlord"],
    "change_pin": ["{pre}how do I change my pin", "{pre}I want a new pin for my card",
                   "{pre}can I reset my pin number", "{pre}where can I update the pin code"],
    "top_up_failed": ["{pre}my top up did not work {when}", "{pre}adding money to my account failed",
                      "{pre}the top-up was rejected {when}", "{pre}why can't I top up my balance"],
    "terminate_account": ["{pre}I want to close my account", "{pre}please delete my account",
                          "{pre}how can I cancel my membership", "{pre}I no longer want this account"],
}
PREFIXES = ["", "hi, ", "hello, ", "please help, ", "excuse me, ", "quick question: "]
WHEN = ["yesterday", "last week", "two days ago", "this morning", "on monday", "a month ago"]

COMPANIES = ["Nokia", "Fortum", "Kone", "Stora Enso", "Elisa", "Wartsila", "Sampo", "Neste", "UPM", "Outokumpu"]
SENTIMENT_TEMPLATES = {
    "positive": ["{co} net sales rose {n} % in the quarter", "{co} operating profit increased to EUR {n} million",
                 "{co} wins a major contract worth EUR {n} million", "{co} raises its full-year outlook",
                 "{co} reports record orders, up {n} percent"],
    "negative": ["{co} operating loss widened to EUR {n} million", "{co} net sales fell {n} % in the quarter",
                 "{co} cuts {n} jobs as demand weakens", "{co} lowers its profit guidance",
                 "{co} shares drop {n} percent after a profit warning"],
    "neutral": ["{co} will publish its interim report on {day}", "{co} appoints a new chief financial officer",
                "{co} annual general meeting will be held in Helsinki", "{co} has {n} employees in Finland",
                "{co} headquarters are located in Espoo"],
}
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday"]


def intent_rows(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for intent, templates in INTENT_TEMPLATES.items():
        combos = list(itertools.product(templates, PREFIXES, WHEN))
        rng.shuffle(combos)
        seen = set()
        for template, prefix, when in combos:
            text = template.format(pre=prefix, when=when)
            text = text[0].upper() + text[1:]
            if text not in seen:
                seen.add(text)
                rows.append({"text": text, "category": intent})
            if len(seen) == 40:
                break
    rng.shuffle(rows)
    return rows


def sentiment_rows(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for label, templates in SENTIMENT_TEMPLATES.items():
        for i in range(80):
            text = rng.choice(templates).format(co=rng.choice(COMPANIES), n=rng.randint(2, 60), day=rng.choice(DAYS))
            rows.append({"headline": text, "sentiment": label, "agreement": rng.choice(["all", "75", "66"])})
    rng.shuffle(rows)
    return [{"id": f"news-{i:04d}", **row} for i, row in enumerate(rows)]


def write_demo_data(directory: Path, seed: int = 7) -> dict[str, Path]:
    """Writes the two files (with a few malformed rows) and returns their paths."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    intent_path = directory / "intent.csv"
    with intent_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "category"])
        writer.writeheader()
        writer.writerows(intent_rows(rng))
        writer.writerow({"text": "I would like to order a pizza", "category": "pizza_order"})  # Unknown label.
        writer.writerow({"text": "   ", "category": "change_pin"})  # Empty text.
        handle.write("too,many,fields,here\n")  # Malformed row.
    with intent_path.open("ab") as handle:
        handle.write(b"my card \xff\xfe is broken,declined_card_payment\n")  # Not UTF-8.

    sentiment_path = directory / "sentiment.jsonl"
    with sentiment_path.open("w") as handle:
        for row in sentiment_rows(rng):
            handle.write(json.dumps(row) + "\n")
        handle.write('{"id": "news-bad-1", "headline": "truncated json\n')  # Malformed JSON.
        handle.write(json.dumps({"id": "news-bad-2", "headline": 42, "sentiment": "neutral"}) + "\n")  # Wrong type.
    return {"intent": intent_path, "sentiment": sentiment_path}
