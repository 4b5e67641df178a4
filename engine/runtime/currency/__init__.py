"""Multi-currency: the ``convert()`` expression function and money totals in one currency at dated
exchange rates (the rates themselves live in :mod:`engine.runtime.exchange_rates`).  Docs: docs/currencies.md."""
