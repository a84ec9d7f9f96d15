"""Error signatures and error types: SQL macros over a failure's message.

A *signature* groups the failures a person would call "the same error". It is
made in three steps, each a macro that can be applied to any text:

``error_line(message)``
    The one line of the message that names the error. In a Python traceback
    that is the last line shaped like an exception (``ValueError: ...``,
    ``pkg.mod.SomeError: ...`` or a bare ``KeyboardInterrupt``), not a
    ``File "..."`` frame. Traces that put the exception before their frames
    (Java, .NET and Node.js with ``at ...`` frames, Go panics with
    ``goroutine N [...]``) give their first such line instead. A message with
    no such line gives its last line that is neither blank nor a frame. Lines
    are trimmed; NULL gives NULL.
``error_text(message)``
    That line with what varies between occurrences of one error replaced by a
    placeholder, whitespace collapsed, cut to 200 characters.
``error_signature(message)``
    The first 12 hex digits of the MD5 of ``error_text(message)``: the same
    on every machine and in every DuckDB version. MD5 is not there for
    security, only to be short and stable.

The placeholders, in the order they are made (an earlier one hides its text
from the later ones, so a UUID never turns into numbers and hex):

==============  ==============================================================
``<url>``       only the path and query are replaced: ``https://host/<path>``
                keeps the scheme and host, which tell services apart
``<email>``     an e-mail address
``<uuid>``      a UUID
``<time>``      an ISO 8601 date or date and time (``T`` or a space, any
                zone), a time of day, an RFC 1123 date
``<ip>``        an IPv4 or IPv6 address, with its port if it has one
``<str>``       a value in single or double quotes (an apostrophe inside a
                word, as in ``can't``, opens no quote)
``<path>``      a file path: absolute (``/a/b.py:12``), home (``~/x``),
                relative (``./x``, ``../x``, or ``a/b.json`` with an
                extension), or Windows (``C:\\x\\y``)
``<duration>``  a number with a unit of time: ``30s``, ``30 s``, ``1.5
                seconds``, ``200ms``, ``1h30m``
``<num>``       any other number that is not part of a word (``item-42``,
                ``job_7`` and ``-3.50`` are; ``utf8`` and ``v2`` are not)
``<hex>``       ``0x...``, or a run of 7 or more hex digits (commit ids,
                hashes); runs of digits alone are numbers
==============  ==============================================================

Status codes are kept: a number right after ``HTTP``, ``status``, ``status
code``, ``response code``, ``returned``, ``error code``, ``exit``, ``exit
code``, ``exit status``, ``exited with code``, ``return code`` or
``signal``, and a three-digit number before an HTTP reason (``404 Not
Found``, ``503 Service Unavailable``, ``500 Server Error``). A 404 and a 503,
or exit status 1 and exit status 7 of curl, are different errors. A quoted
value holding such a code is kept whole, since its code is what matters
(httpx's ``'404 Not Found'``).

``classify_error(recorded_type, exit_code, signal, message)`` gives a
failure's error type. A specific recorded type is kept as it is: one given at
enqueue time (such as ``CommitValidationFailed``) and the replay's own
``timeout``, ``not_found``, ``permission`` and ``interrupted``. The generic
types the replay records (``exit_code``, ``signal``, ``unknown``), and a
missing one, are refined: first from ``error_text(message)`` (so every failure
with one signature and one status gets one type), matched without regard to
case against these rules, the first that matches wins:

======================  ======================================================
``resource_exhausted``  out of memory, OOM, no space left on device, too many
                        open files, disk quota exceeded, resource temporarily
                        unavailable, HTTP 429, rate limits and throttling
``network``             connection refused, reset or aborted, timed out while
                        connecting, name resolution, unreachable hosts, TLS
                        and certificate errors, ``ConnectionError``, HTTP 502,
                        503 and 504
``timeout``             any other time-out: ``timed out``, ``TimeoutError``,
                        ``ReadTimeout``, ``deadline exceeded``
``permission``          permission denied, ``EACCES``, operation not
                        permitted, access denied, failed authentication,
                        read-only file system, HTTP 401 and 403
``not_found``           something the attempt needed is missing: a command
                        (``command not found``), a file (``No such file or
                        directory``, ``FileNotFoundError``), a module, a
                        database object (``does not exist``), HTTP 404
``interrupted``         ``KeyboardInterrupt``, interrupted, SIGINT, cancelled
``signal``              the message says a signal ended it: ``Killed``,
                        ``Segmentation fault``, ``core dumped``, ``SIGTERM``
``validation``          the input was refused: ``ValueError``,
                        ``ValidationError``, ``KeyError``, decode and parse
                        errors, invalid, malformed, schema, constraint
                        violations, HTTP 400 and 422
======================  ======================================================

A programming error (a Go ``runtime error``, a nil or null pointer) says
nothing of the input even when its text says "invalid", so its message gives
no type and its status decides. ``TypeError`` and ``AttributeError`` are left
to the status too: they are usually bugs, not bad input.

Then from the status: a signal gives ``signal``; exit code 124 (what
``timeout(1)`` returns) ``timeout``, 126 ``permission``, 127 ``not_found``;
129 to 159 (a shell's 128 + the signal, as 137 for SIGKILL) and a negative
code (Python's ``-signal``) ``signal``; any other non-zero code
``exit_code``. Exit code 137 is not taken for ``resource_exhausted``: the
kernel's OOM killer and a plain ``kill -9`` look the same from the status, and
a message that says "out of memory" is classified as such before the status
is looked at. Last, the recorded generic type, or ``unknown``.
"""

from __future__ import annotations

from analytics._sql import quote_literal

# Limitation: a random identifier with no digit at a word boundary and fewer
# than 7 hex digits (`req_Zq8xKw`, `job-7f3k9`) is not recognised, so each
# one makes its own signature, because RE2 cannot ask "a word of 8 or more
# characters holding both a letter and a digit" without lookahead; a pass in
# Python over the distinct texts would lift it, at the price of SQL macros.

_BLANKS = "' ' || chr(9) || chr(13)"

# A line that states an exception, after the optional Java prefixes: `Name:`
# or `pkg.Name:` followed by text; a bare dotted `pkg.Name`; a bare builtin
# name ending like an exception; a Go panic.
_EXCEPTION_LINE = (
    r'^(?:Exception in thread "[^"]*" |Caused by: |Uncaught )?'
    r"(?:(?:[A-Za-z_$][\w$]*\.)*[A-Z][\w$]*:(?:\s|$)"
    r"|(?:[A-Za-z_$][\w$]*\.)+[A-Z][\w$]*\s*$"
    r"|[A-Z]\w*(?:Error|Exception|Interrupt|Exit|Iteration)\s*$"
    r"|(?:panic|fatal error): )"
)
# Lines shaped like one that do not name an error: log levels and the notes
# that follow an error (PostgreSQL's DETAIL and HINT, for one).
_NOT_EXCEPTION_LINE = (
    r"^(?i:warning|warn|note|hint|detail|context|statement|query|line|where"
    r"|notice|info|debug|log|usage|tip|help|see)\s*:"
)
# Traces that print the exception first and their frames after it.
_FRAMES_AFTER = r"(?m)^\s+at [^\s(]+(?: [^\s(]+)? ?\(|^\s+at \S+:\d+|^goroutine \d+ \["
# Lines that only say where an error happened, or how to learn more.
_FRAME_LINE = (
    r'^\s*(?:File "|at [^\s(]|\.\.\. \d+ (?:more|common frames omitted)'
    r"|goroutine \d+ \[|Traceback \(most recent call last\)|exit status \d+$"
    r"|note: run with)|^\s+\S+\.go:\d+"
)

ERROR_LINE = f"""
CREATE MACRO error_line(message) AS CASE
    WHEN message IS NULL THEN NULL
    WHEN strpos(message, chr(10)) = 0 AND strpos(message, chr(13)) = 0
        THEN trim(message, {_BLANKS})
    ELSE list_transform(
        [string_split(replace(message, chr(13), chr(10)), chr(10))],
        lambda lines: trim(coalesce(
            list_filter(lines, lambda line:
                regexp_matches(line, {quote_literal(_EXCEPTION_LINE)})
                AND NOT regexp_matches(line, {quote_literal(_NOT_EXCEPTION_LINE)})
            )[CASE WHEN regexp_matches(message, {quote_literal(_FRAMES_AFTER)})
                THEN 1 ELSE -1 END],
            list_filter(lines, lambda line:
                regexp_matches(line, '[A-Za-z0-9]')
                AND NOT regexp_matches(line, {quote_literal(_FRAME_LINE)})
            )[-1],
            ''
        ), {_BLANKS})
    )[1]
END
"""

# Marks a status code so that the passes after it leave it alone; removed at
# the end. No message holds this control character.
_MARK = "chr(1)"

_HTTP_REASONS = (
    "client error|server error|bad request|unauthorized|payment required"
    "|forbidden|not found|method not allowed|not acceptable|request timeout"
    "|conflict|gone|payload too large|request entity too large"
    "|unsupported media type|unprocessable|too many requests"
    "|internal server error|not implemented|bad gateway|service unavailable"
    "|gateway time-?out"
)
# Group 1 and 2: a code after the word that introduces it; group 3 and 4: a
# three-digit code before an HTTP reason (or aiohttp's `, message=`).
_STATUS_CODE = (
    r"(?i)((?:\bhttps?(?:/[\d.]+)?[ :]*(?:error|response|status)?[ :]*(?:code)?"
    r"|\bstatus(?:[ _-]?code)?|\bresponse(?:[ _-]?code)?|\breturned(?: error)?"
    r"|\berror code|\bexit(?:ed with)?(?: code| status)?|\breturn ?code"
    r"|\bsignal)[ :=#]*)(\d{1,3})\b"
    rf"|\b([1-5]\d\d)(,? ?message=|:? (?:{_HTTP_REASONS}))"
)
_URL = (
    r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^\s/@'\"<>]*@)?([^\s/:?#'\"<>)\]]*)"
    r"(?::\d+)?[/?#][^\s'\"<>)\]]*"
)
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ZONE = r"(?: ?(?:Z|UTC|GMT|[+-]\d\d:?\d\d))?"
_TIME = (
    r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d? "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4}"
    rf"(?: \d\d:\d\d(?::\d\d)?{_ZONE})?"
    rf"|\d{{4}}-\d\d-\d\d(?:[T ]\d\d?:\d\d(?::\d\d(?:[.,]\d+)?)?)?{_ZONE}"
    rf"|\b\d\d?:\d\d:\d\d(?:[.,]\d+)?{_ZONE}"
)
# Group 1 is the character before the address, put back; RE2 has no
# lookbehind to ask for it without taking it.
_HEX4 = "[0-9a-fA-F]{1,4}"
_IP = (
    r"(^|[^\w:.])(?:"
    rf"\[?(?:(?:{_HEX4}:){{7}}{_HEX4}"
    rf"|(?:{_HEX4}:)*(?:{_HEX4})?::(?:(?:{_HEX4}:)*(?:\d+\.\d+\.\d+\.\d+|{_HEX4}))?)\]?"
    r"|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b"
    r")(?::\d{1,5}\b)?"
)
_QUOTED = r"(^|\W)(?:'\[[^\]\n]*\]'|'[^'\x01\n]*'|\"[^\"\x01\n]*\")"
_PATH_CHARS = r"[^\s'\",;()\[\]{}<>:]"
_PATH = (
    r"(^|[\s(\[{=,])(?:"
    rf"(?:~|\.\.?)?/{_PATH_CHARS}+(?::\d+)*"
    rf"|[A-Za-z]:[\\/]{_PATH_CHARS}*(?::\d+)*"
    r"|[\w-][\w.-]*(?:/[\w.-]+)*/[\w.-]*\.[A-Za-z][A-Za-z0-9]*"
    r")"
)
_DURATION = (
    r"(^|[^\w.\x01])\d+(?:\.\d+)?(?:"
    r"(?:ns|us|µs|ms|s|m|h|d)(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))*"
    r"|\s?(?:milliseconds?|microseconds?|nanoseconds?|ms|secs?|seconds?|mins?"
    r"|minutes?|hrs?|hours?|days?|s))\b"
)
_NUMBER = r"(^|[^A-Za-z0-9\x01])-?\d+(?:[.,]\d+)*(\b|_)"
_HEX = r"(^|[^A-Za-z0-9])(?:0[xX][0-9a-fA-F]+|[0-9a-fA-F]{7,})(\b|_)"

# Lines longer than this are cut before they are normalised, which bounds the
# work on a pathological line; what is cut would be past the 200 characters
# kept anyway, unless the placeholders shrank the line a lot.
_LINE_LIMIT = 2000
_TEXT_LIMIT = 200


# Each pass, in order: its pattern, its replacement (SQL), and the strings
# (SQL) one of which a line must hold for the pattern to match in it. Finding
# those with strpos is far cheaper than running the pattern on a line without
# them, which costs about as much as a match: DuckDB copies the line anyway.
_PASSES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (_STATUS_CODE, rf"'\1' || {_MARK} || '\2\3' || {_MARK} || '\4'", ()),
    (_URL, r"'\1\2/<path>'", ("'://'",)),
    (_EMAIL, "'<email>'", ("'@'",)),
    (_UUID, "'<uuid>'", ("'-'",)),
    (_TIME, "'<time>'", ()),
    (_IP, r"'\1<ip>'", ()),
    (_QUOTED, r"'\1<str>'", ("chr(39)", "chr(34)")),
    (_PATH, r"'\1<path>'", ("'/'", "chr(92)")),
    (_DURATION, r"'\1<duration>'", ()),
    (_NUMBER, r"'\1<num>\2'", ()),
    (_HEX, r"'\1<hex>\2'", ()),
    # Runs of blanks, and blanks other than a space: a single space is left
    # alone rather than replaced by itself.
    (r"\s{2,}|[\t\n\f\r]", "' '", ("'  '", "chr(9)", "chr(12)")),
)


def _error_text_sql() -> str:
    # A line from error_line holds no line break, so the last pass needs to
    # look for neither.
    text = f"left(error_line(message), {_LINE_LIMIT})"
    for pattern, replacement, needles in _PASSES:
        replaced = f"regexp_replace(t, {quote_literal(pattern)}, {replacement}, 'g')"
        if needles:
            held = " OR ".join(f"strpos(t, {needle}) > 0" for needle in needles)
            replaced = f"CASE WHEN {held} THEN {replaced} ELSE t END"
        # The lambda names the text once: written out in a CASE, the chain of
        # passes before it would be copied into each branch.
        text = f"list_transform([{text}], lambda t: {replaced})[1]"
    return f"left(trim(replace({text}, {_MARK}, '')), {_TEXT_LIMIT})"


ERROR_TEXT = f"CREATE MACRO error_text(message) AS {_error_text_sql()}"

ERROR_SIGNATURE = (
    "CREATE MACRO error_signature(message) AS left(md5(error_text(message)), 12)"
)

# The message rules, tried in this order on error_text (case is ignored). A
# rule whose type is None stops the search: the status decides.
MESSAGE_RULES: tuple[tuple[str | None, str], ...] = (
    (
        "resource_exhausted",
        r"memoryerror|out ?of ?memory|\boom|cannot allocate|\benomem\b"
        r"|no space left|\benospc\b|too many open files|\bemfile\b"
        r"|quota exceeded|resource temporarily unavailable|\beagain\b"
        r"|too many requests|\b429\b|rate ?limit|throttl|rate exceeded"
        r"|resource ?exhausted|insufficient (?:memory|storage|disk)|heap space"
        r"|memory limit|disk full|no buffer space",
    ),
    (
        "network",
        r"connection ?(?:refused|reset|aborted|closed)|connection ?error"
        r"|connect(?:ion|ing)? ?(?:timed ?out|timeout)|timed out connecting"
        r"|\beconn(?:refused|reset|aborted)\b|\betimedout\b"
        r"|\be(?:host|net)unreach\b|unreachable|no route to host"
        r"|name or service not known|name resolution|nodename nor servname"
        r"|getaddrinfo|could not resolve|no such host|\bdns\b"
        r"|\b50[234]\b|bad gateway|service unavailable|gateway time-?out"
        r"|\bssl|\btls\b|certificate verify|max retries exceeded"
        r"|failed to establish|remote ?end closed|remote ?disconnected"
        r"|server disconnected|socket hang up|gaierror|proxy ?error"
        r"|(?:could not|couldn't|can't|cannot|unable to|failed to) connect"
        r"|network ?error",
    ),
    (
        "timeout",
        r"timeout|timed ?out|\btime out\b|deadline ?exceeded|deadline_exceeded",
    ),
    (
        "permission",
        r"permission ?denied|permissionerror|\beacces\b|\beperm\b|not permitted"
        r"|access ?denied|\b40[13]\b|forbidden|unauthori[sz]ed"
        r"|not authori[sz]ed|authentication ?(?:failed|error|required)"
        r"|invalid (?:credentials|token|api[ _-]?key|password|signature)"
        r"|(?:token|credentials?) (?:has )?expired|expired (?:token|credentials)"
        r"|read-only file system|\berofs\b|nocredentials|unable to locate "
        r"credentials|insufficient privilege|must be owner|login failed",
    ),
    (
        "not_found",
        r"not ?found|no such file|no such (?:key|bucket|table|column|object)"
        r"|nosuch(?:key|bucket)|\benoent\b|\b404\b|no module named"
        r"|does not exist|doesn't exist|(?:cannot|can't|could not|couldn't"
        r"|unable to) find|is not recognized as an internal",
    ),
    (
        "interrupted",
        r"keyboardinterrupt|interrupted|\bsigint\b|cancell?ed ?error"
        r"|context canceled|(?:operation|task) was cancell?ed",
    ),
    (
        "signal",
        r"segmentation fault|core dumped|\bsig(?:kill|term|segv|abrt|bus|ill"
        r"|quit|hup|pipe)\b|^(?:killed|terminated|aborted|hangup|bus error"
        r"|illegal instruction)\b",
    ),
    (None, r"runtime error|nil pointer|invalid memory address|null ?pointer"),
    (
        "validation",
        r"valueerror|validation|decodeerror|parse ?error|(?:could not|failed to"
        r"|unable to|cannot) parse|invalid|malformed|schema|keyerror"
        r"|\b4(?:00|22)\b|bad request|unprocessable|constraint|integrityerror"
        r"|unique ?violation|duplicate key|not a valid|unexpected token"
        r"|expecting value|missing required|is required",
    ),
)

# What the replay records when it knows no more than the exit status.
GENERIC_TYPES: tuple[str, ...] = ("exit_code", "signal", "unknown")


def _classify_sql() -> str:
    rules = "\n".join(
        f"            WHEN regexp_matches(text, {quote_literal(pattern)}, 'i') "
        f"THEN {'NULL' if kind is None else quote_literal(kind)}"
        for kind, pattern in MESSAGE_RULES
    )
    generic = ", ".join(quote_literal(kind) for kind in GENERIC_TYPES)
    # The message's verdict is made in a lambda so that error_text, which
    # the macro would otherwise expand once per rule, is computed once.
    return f"""
CREATE MACRO classify_error(recorded_type, exit_code, signal, message) AS CASE
    WHEN nullif(recorded_type, '') IS NOT NULL
        AND recorded_type NOT IN ({generic})
        THEN recorded_type
    ELSE coalesce(
        list_transform([error_text(message)], lambda text: CASE
{rules}
        END)[1],
        CASE
            WHEN signal IS NOT NULL THEN 'signal'
            WHEN exit_code = 124 THEN 'timeout'
            WHEN exit_code = 126 THEN 'permission'
            WHEN exit_code = 127 THEN 'not_found'
            WHEN exit_code BETWEEN 129 AND 159 OR exit_code < 0 THEN 'signal'
            WHEN exit_code <> 0 THEN 'exit_code'
        END,
        nullif(recorded_type, ''),
        'unknown'
    )
END
"""


CLASSIFY_ERROR = _classify_sql()

MACROS: tuple[str, ...] = (ERROR_LINE, ERROR_TEXT, ERROR_SIGNATURE, CLASSIFY_ERROR)
