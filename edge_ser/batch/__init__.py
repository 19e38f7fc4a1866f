"""Batch processing of recordings (call-center calls): inputs, per-recording outputs, summaries.

    recordings = collect_recordings(["calls/", "more/*.wav", "manifest.csv"])
    report = run_batch(recordings, out_dir, BatchOptions(...), RecognizerSpec(...))

Each recording is decoded block by block, one stream per mapped channel (one speaker per channel),
and written to its own folder under the output directory, atomically, with a completion marker
written last, so an interrupted batch resumes where it stopped. See docs/batch.md.
"""
