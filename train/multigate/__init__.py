"""The multilingual multi-gating model family (`model.family: multigate`).

Several feature streams (our streamable TCN encoder, MFCC, prosody contours, a GE2E speaker
encoder), each reduced to one vector by its own branch; one gate per language weighs the streams
and a per-language head classifies their weighted sum. A shared gate and head, trained with
language dropout, serve every language without its own. See `docs/multigate.md`.

Modules: `config` (settings), `streams`, `ge2e`, `gates`, `heads`, `contrastive`, `model`,
`search` (head architecture search, also a command: `python -m edge_ser_train.multigate.search`).
"""
