"""The project's own small demo dataset, written deterministically.

Three datasets, a few hundred rows each, small enough for the quick start and
the tests, and with a handful of deliberately bad rows so the quick start shows
quarantine at work:

- `intent.csv` (`text,category`): 8 Banking77 customer-service intents.
- `sentiment.jsonl` (`id, headline, sentiment, agreement`): financial news
  headlines labelled positive / neutral / negative, Financial PhraseBank style.
- `catalog/` (BEIR layout: `corpus.jsonl` with metadata, `queries.jsonl`,
  `qrels/train.tsv`): a shop's product catalog and shoppers' requests, for the
  embedder and re-ranker. Requests paraphrase what they want ("shelter" for a
  tent), so word overlap alone does not find every item.

Example:

>>> import tempfile, pathlib
>>> paths = write_demo_data(pathlib.Path(tempfile.mkdtemp()))
>>> sorted(p.name for p in paths.values())
['catalog', 'intent.csv', 'sentiment.jsonl']
"""

from __future__ import annotations

import csv
import itertools
import json
import random
from pathlib import Path

# Shared with the sentiment monitor's demo stream, which does not import the pipeline.
from suite_core.demo_text import COMPANIES, DAYS, SENTIMENT_TEMPLATES

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


# Product kind -> (category, synonyms shoppers use, what it is for).
PRODUCTS = {
    "tent": ("outdoor", ["shelter", "tent"], "sleeping outdoors on camping trips"),
    "sleeping bag": ("outdoor", ["sleeping bag", "bag to sleep in"], "staying warm at night in the wild"),
    "hiking boots": ("outdoor", ["walking shoes", "boots"], "long walks on rough mountain trails"),
    "rain jacket": ("outdoor", ["raincoat", "shell jacket"], "keeping dry in a downpour"),
    "chef knife": ("kitchen", ["kitchen knife", "blade for cooking"], "chopping vegetables and slicing meat"),
    "frying pan": ("kitchen", ["skillet", "pan"], "searing steaks and cooking eggs"),
    "espresso machine": ("kitchen", ["coffee maker", "barista machine"], "brewing strong coffee at home"),
    "blender": ("kitchen", ["smoothie maker", "mixer"], "making smoothies and soups"),
    "headphones": ("electronics", ["earphones", "headset"], "listening to music without disturbing others"),
    "mechanical keyboard": ("electronics", ["typing keyboard", "keyboard"], "typing all day at the office"),
    "webcam": ("electronics", ["video camera for calls", "camera"], "video meetings from home"),
    "power bank": ("electronics", ["portable charger", "battery pack"], "charging a phone while travelling"),
}
# Attribute -> (how the catalog says it, how a shopper asks for it).
ATTRIBUTES = {
    "lightweight": ("weighs almost nothing", "that is light to carry"),
    "waterproof": ("fully sealed against water", "that survives rain"),
    "budget": ("our most affordable option", "that is cheap"),
    "premium": ("made from the finest materials", "of the best quality money can buy"),
    "compact": ("folds down to a tiny size", "that takes little space"),
    "quiet": ("designed to make almost no noise", "that is silent"),
}
BRANDS = ["Northpeak", "Alder", "Kestrel", "Lumen", "Corvid", "Fjord"]
REQUEST_TEMPLATES = ["I need a {syn} {attr}", "looking for a {syn} {attr} for {use}",
                     "recommend a {syn} {attr}"]


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
        for _ in range(80):
            text = rng.choice(templates).format(co=rng.choice(COMPANIES), n=rng.randint(2, 60), day=rng.choice(DAYS))
            rows.append({"headline": text, "sentiment": label, "agreement": rng.choice(["all", "75", "66"])})
    rng.shuffle(rows)
    return [{"id": f"news-{i:04d}", **row} for i, row in enumerate(rows)]


def catalog_items(rng: random.Random) -> list[dict]:
    items = []
    for (kind, (category, _, use)), (attribute, (description, _)) in itertools.product(
            PRODUCTS.items(), ATTRIBUTES.items()):
        brand = rng.choice(BRANDS)
        items.append({
            "_id": f"{kind.replace(' ', '-')}-{attribute}",
            "title": f"{brand} {attribute} {kind}",
            "text": f"A {attribute} {kind} for {use}. {description[0].upper() + description[1:]}.",
            "metadata": {"category": category, "brand": brand, "price": rng.randint(10, 400),
                         "in_stock": rng.random() > 0.2},
        })
    return items


def catalog_requests(rng: random.Random) -> list[tuple[str, str, str]]:
    """(query id, shopper's words, the item id they want)."""
    requests: list[tuple[str, str, str]] = []
    for (kind, (_, synonyms, use)), (attribute, (_, wish)) in itertools.product(PRODUCTS.items(), ATTRIBUTES.items()):
        for template in rng.sample(REQUEST_TEMPLATES, 2):
            text = template.format(syn=rng.choice(synonyms), attr=wish, use=use)
            requests.append((f"q{len(requests):04d}", text, f"{kind.replace(' ', '-')}-{attribute}"))
    return requests


def write_catalog(directory: Path, rng: random.Random) -> Path:
    """The catalog in BEIR layout, ready for the embedder and re-ranker pipelines."""
    (directory / "qrels").mkdir(parents=True, exist_ok=True)
    with (directory / "corpus.jsonl").open("w") as handle:
        for item in catalog_items(rng):
            handle.write(json.dumps(item) + "\n")
    requests = catalog_requests(rng)
    with (directory / "queries.jsonl").open("w") as handle:
        for query_id, text, _ in requests:
            handle.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    with (directory / "qrels" / "train.tsv").open("w") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        handle.writelines(f"{query_id}\t{item_id}\t1\n" for query_id, _, item_id in requests)
    return directory


def write_demo_data(directory: Path, seed: int = 7) -> dict[str, Path]:
    """Writes the demo datasets (with a few malformed rows) and returns their paths."""
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
    return {"intent": intent_path, "sentiment": sentiment_path, "catalog": write_catalog(directory / "catalog", rng)}
