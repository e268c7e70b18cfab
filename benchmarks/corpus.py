"""A real text corpus that needs no download: the documentation of Python's standard library.

Used by the demo and the benchmarks. Each document is one paragraph of a docstring of a standard
library module, class, function or method, labelled with its module; :data:`QUERIES` are questions a
person would ask, phrased without the documentation's own words where possible, each with the modules
whose documents answer it (the relevance labels for hit rate and recall).
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from dataclasses import dataclass

__all__ = ["MODULES", "QUERIES", "Document", "Query", "python_docs"]

MODULES = (
    "argparse", "asyncio", "base64", "bisect", "bz2", "calendar", "collections", "concurrent.futures",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib",
    "email.message", "enum", "fileinput", "fnmatch", "fractions", "ftplib", "functools", "getpass", "glob",
    "gzip", "hashlib", "heapq", "hmac", "html.parser", "http.client", "http.server", "imaplib", "inspect",
    "io", "ipaddress", "itertools", "json", "logging", "lzma", "mailbox", "math", "mimetypes",
    "multiprocessing", "operator", "os", "pathlib", "pickle", "platform", "pprint", "queue", "random", "re",
    "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "signal", "smtplib", "socket", "sqlite3",
    "ssl", "statistics", "string", "struct", "subprocess", "tarfile", "tempfile", "textwrap", "threading",
    "time", "timeit", "traceback", "typing", "unittest", "urllib.parse", "urllib.request", "uuid",
    "warnings", "weakref", "xml.etree.ElementTree", "zipfile", "zlib", "zoneinfo", "tomllib", "wave",
    "tokenize", "pdb", "doctest", "codecs", "array", "binascii", "email.utils", "xml.dom.minidom",
    "optparse", "getopt", "locale", "gettext", "numbers", "cmath", "colorsys", "pstats", "cProfile", "ast",
    "dis", "pickletools", "plistlib", "netrc", "ctypes", "sysconfig", "runpy", "importlib", "pkgutil",
    "filecmp", "stat", "linecache", "reprlib", "graphlib", "abc", "types", "copyreg", "dbm", "quopri",
    "html", "http.cookies", "http.cookiejar", "xmlrpc.client", "socketserver", "wsgiref.simple_server",
    "webbrowser", "turtle", "telnetlib", "poplib", "nntplib", "cgi", "pydoc", "code", "codeop",
)  # fmt: skip


@dataclass(frozen=True)
class Document:
    """One paragraph of standard-library documentation."""

    id: int
    module: str
    title: str
    text: str


@dataclass(frozen=True)
class Query:
    """A question and the modules whose documents are relevant to it."""

    text: str
    modules: tuple[str, ...]


QUERIES = (
    Query("unpack files from a compressed archive of many files", ("zipfile", "tarfile")),
    Query("read options and flags given to my program on the command line", ("argparse",)),
    Query("shrink data so it takes fewer bytes", ("zlib", "gzip", "bz2", "lzma")),
    Query("deliver an e-mail through a mail server", ("smtplib",)),
    Query("what day of the week falls on a given date", ("calendar", "datetime")),
    Query("launch another program and collect what it prints", ("subprocess",)),
    Query("find every substring that fits a pattern", ("re",)),
    Query("save a Python object to disk and load it back later", ("pickle", "shelve")),
    Query("pick an item by chance", ("random", "secrets")),
    Query("duplicate a folder with everything inside it", ("shutil",)),
    Query("turn a string of JavaScript object notation into dictionaries", ("json",)),
    Query("split a web address into host, path and query", ("urllib.parse",)),
    Query("make sure only one worker touches shared state at a time", ("threading", "multiprocessing")),
    Query("scratch file that disappears when closed", ("tempfile",)),
    Query("average and spread of a list of numbers", ("statistics",)),
    Query("load rows of a spreadsheet exported as comma separated values", ("csv",)),
    Query("fingerprint a message with a secure digest", ("hashlib", "hmac")),
    Query("show what changed between two versions of a text", ("difflib",)),
    Query("record diagnostic messages with severity levels", ("logging",)),
    Query("always take out the smallest item first", ("heapq", "queue")),
    Query("exact decimal arithmetic for money", ("decimal", "fractions")),
    Query("wait for many network connections at once without threads", ("asyncio", "selectors")),
    Query("measure how long a small snippet takes to run", ("timeit", "time")),
    Query("store rows in a lightweight embedded SQL database", ("sqlite3",)),
    Query("encrypted network connection with certificates", ("ssl",)),
)


def _paragraphs(doc: str) -> list[str]:
    out = []
    for block in doc.split("\n\n"):
        text = " ".join(line.strip() for line in block.splitlines()).strip()
        if len(text) >= 60 and not text.startswith((">>>", "...")):
            out.append(text[:1000])
    return out


def python_docs(limit: int | None = None, *, per_object: int = 4) -> list[Document]:
    """Documents from the standard library's docstrings, in a stable order (a few thousand).

    Args:
        limit: at most this many documents.
        per_object: at most this many paragraphs of one docstring.
    """
    docs: list[Document] = []
    seen: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            objects: list[tuple[str, object]] = [(name, module)]
            for attr, value in sorted(vars(module).items()):
                if attr.startswith("_") or getattr(value, "__module__", None) != module.__name__:
                    continue
                if inspect.isclass(value) or inspect.isfunction(value) or inspect.isbuiltin(value):
                    objects.append((f"{name}.{attr}", value))
                if inspect.isclass(value):
                    for meth, member in sorted(vars(value).items()):
                        if not meth.startswith("_") and inspect.isroutine(member):
                            objects.append((f"{name}.{attr}.{meth}", member))
            for title, obj in objects:
                doc = inspect.getdoc(obj)
                if not doc:
                    continue
                for text in _paragraphs(doc)[:per_object]:
                    if text in seen:
                        continue
                    seen.add(text)
                    docs.append(Document(id=len(docs), module=name, title=title, text=text))
                    if limit is not None and len(docs) >= limit:
                        return docs
    return docs
