"""The service's stable error codes: what a client can match on, with the HTTP status of each.

Kept apart from `ser.serving.errors` (which needs BentoML) so the decoder and `ser predict`
can name codes without importing the server.

    status, meaning = CODES["too_long"]
"""

from __future__ import annotations

# code -> (HTTP status, when it is used); the public contract, listed in the README.
CODES: dict[str, tuple[int, str]] = {
    "bad_request": (400, "a malformed HTTP request (framing, Content-Length, header bytes); 431 for an oversize head"),
    "bad_form": (400, "not multipart/form-data, a wrong or text field, a malformed multipart body or file name"),
    "too_many_files": (400, "more than one file to /predict (413 past serve.max_batch_files in /predict_batch)"),
    "empty_upload": (400, "a file of zero bytes, or no file"),
    "unsupported_format": (400, "not a readable wav, flac, ogg or mp3"),
    "bad_sample_rate": (400, "sample rate outside 4000-192000 Hz"),
    "bad_channels": (400, "more than 8 channels"),
    "truncated": (400, "the file ends before the audio its header announces"),
    "no_samples": (400, "the audio holds no samples"),
    "non_finite": (400, "NaN or infinite samples"),
    "too_few_clips": (400, "fewer clips to /predict_speaker than the model's enrolment minimum (enrolment.clips)"),
    "unknown_class": (400, "`?classes=` names a class the model lacks, or fewer than two"),
    "bad_query": (400, "a query option the endpoint does not take (`profile` on /predict_speaker)"),
    "invalid_input": (400, "a value that fails the endpoint's schema (e.g. /infer's features)"),
    "not_found": (404, "no such route"),
    "no_enrolment": (404, "/predict_speaker on a model packaged without an enrolment head (enrolment.head false)"),
    "unknown_profile": (404, "`?profile=` names no calibration profile packaged with this model"),
    "method_not_allowed": (405, "the route exists for another HTTP method"),
    "timeout": (
        408,
        "the request head or a read of its body took over serve.read_timeout_s, or a stalled upload was "
        "dropped for a waiting one; 504 when the service took over its 60 s traffic timeout",
    ),
    "too_large": (413, "the request body is over serve.max_upload_mb"),
    "too_long": (413, "the audio is longer than serve.max_duration_s"),
    "too_costly": (
        413,
        "decoding would cost more samples than serve.max_samples_per_file / _per_request, or "
        "scoring more windows than serve.max_queued_windows",
    ),
    "bad_range": (416, "a Range header past the end of a demo page file"),
    "unscorable": (422, "the model gave no finite scores (a guard; no known input does this)"),
    "overloaded": (
        503,
        "the model's queue (serve.max_queued_windows) or the upload slots (serve.max_uploads) are "
        "full: retry after the Retry-After header's seconds",
    ),
    "internal": (500, "a server error (logged with its traceback)"),
}
