"""A fleet of simulated phones training one model with Flower (federated learning).

Each Flower client is a simulated phone running the schedule manager on its own
user's digits; the server aggregates with FedAvg and compares a battery-aware
client selection with Flower's default. Flower's simulation engine (on Ray) runs
the fleet on one machine; the same ServerApp and ClientApp run on Flower's
deployment engine (SuperLink and SuperNodes) without code changes.

* :mod:`.fleet` — run settings (:class:`~.fleet.FleetConfig`), phones and their day traces.
* :mod:`.local` — one phone's local training in a round (manager-driven, or fixed epochs).
* :mod:`.client_app` — the Flower ``ClientApp`` (``app``).
* :mod:`.strategies` — FedAvg weighted by steps, battery-aware selection, Flower's default.
* :mod:`.server_app` — the Flower ``ServerApp`` (``app``) and central evaluation.
* :mod:`.report` — per-round table, JSON and plots.
* :mod:`.run` — the bundle, the simulation engine, a Flower app directory for deployment.

Flower and Ray are imported only by the modules that need them.
"""
