"""Streaming benchmarks: the edge-ser pipeline against silero-vad and openSMILE eGeMAPS on the
same audio, on one CPU thread (`python main.py bench stream`). Peers come from the `bench`
extra and are imported only here."""
