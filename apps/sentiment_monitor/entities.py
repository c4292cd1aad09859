"""Which companies an item is about, as tickers.

Three signals: cashtags in the text (``$NOK``), the item's explicit
``tickers``, and the watchlist's company names and aliases, matched as whole
words regardless of case.

Example:

>>> extractor = EntityExtractor({"NOK": ("Nokia",), "STERV": ("Stora Enso",)})
>>> extractor.extract("Nokia and STORA ENSO shares fall; $UPM flat", ("KNEBV",))
('KNEBV', 'NOK', 'STERV', 'UPM')
>>> extractor.extract("Nokian Tyres is not Nokia's business")  # whole words only
('NOK',)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from apps.sentiment_monitor.config import EntityConfig

# A cashtag: $ then a letter, then letters / digits / a dot (e.g. $BRK.B), not inside a word or amount.
CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9]{0,9}(?:\.[A-Za-z]{1,2})?)\b")


class EntityExtractor:
    def __init__(self, watchlist: Mapping[str, Iterable[str]], *, cashtags: bool = True,
                 only_watchlist: bool = False) -> None:
        self.tickers = frozenset(t.upper() for t in watchlist)
        self.cashtags = cashtags
        self.only_watchlist = only_watchlist
        names: dict[str, str] = {}
        for ticker, aliases in watchlist.items():
            for alias in aliases:
                names[alias.casefold()] = ticker.upper()
        self._names = names
        # Longest first so "Stora Enso" wins over a shorter alias sharing its start.
        alternatives = sorted(names, key=len, reverse=True)
        self._pattern = (re.compile(r"(?<!\w)(" + "|".join(re.escape(a) for a in alternatives) + r")(?!\w)",
                                    re.IGNORECASE) if alternatives else None)

    @classmethod
    def from_config(cls, config: EntityConfig) -> EntityExtractor:
        return cls(config.watchlist, cashtags=config.cashtags, only_watchlist=config.only_watchlist)

    def extract(self, text: str, tickers: Iterable[str] = ()) -> tuple[str, ...]:
        """The sorted, distinct tickers the text and the explicit tickers name."""
        found = {t.upper().lstrip("$") for t in tickers}
        if self.cashtags:
            found.update(m.group(1).upper() for m in CASHTAG.finditer(text))
        if self._pattern is not None:
            found.update(self._names[m.group(1).casefold()] for m in self._pattern.finditer(text))
        if self.only_watchlist:
            found &= self.tickers
        return tuple(sorted(found))
