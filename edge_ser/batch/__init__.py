"""Batch processing of recordings (call-center calls): inputs, per-recording outputs, summaries.

    recordings, problems = collect_recordings(["calls/", "more/*.wav", "manifest.csv"])
    settings = JobSettings(out_dir="results", fingerprint=fingerprint(spec, None))
    report = run_batch(recordings, settings, spec, workers=4, problems=problems)

(`spec` is a `RecognizerSpec`, or any picklable callable that builds a recognizer.)

Each recording is decoded block by block, one stream per mapped channel (one speaker per channel),
and written to its own folder under the output directory, atomically, with a completion marker
written last, so an interrupted batch resumes where it stopped. See docs/batch.md.
"""
