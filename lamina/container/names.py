"""Container names: the validity rule and Docker-style random names ("adjective_surname").

A name is stored with a leading slash (``/happy_hopper``), as Docker stores it; lookups accept
it with or without.  Valid names match ``/?[a-zA-Z0-9][a-zA-Z0-9_.-]+``.  Random names pair an
adjective with the surname of a notable scientist or engineer, as Docker's namesgenerator does,
and never produce ``boring_wozniak`` (Steve Wozniak is not boring).
"""

from __future__ import annotations

import functools
import os

from lamina import errdefs
from lamina.digest import is_hex_id

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    import re

__all__ = ["ADJECTIVES", "SURNAMES", "is_container_id", "is_valid_name", "random_name", "validate_name"]

@functools.cache
def _valid_name() -> re.Pattern[str]:
    """The pattern of a valid name, compiled on first use (a listing checks no name)."""
    import re

    return re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def is_valid_name(name: str) -> bool:
    """Whether ``name`` (with or without its leading slash) is a valid container name."""
    return _valid_name().match(name) is not None


def is_container_id(text: str) -> bool:
    """Whether ``text`` is a full container id (64 lowercase hex digits)."""
    return is_hex_id(text)

ADJECTIVES = (
    "admiring", "adoring", "affectionate", "agitated", "amazing", "angry", "awesome", "beautiful",
    "blissful", "bold", "boring", "brave", "busy", "charming", "clever", "compassionate", "competent",
    "condescending", "confident", "cool", "cranky", "crazy", "dazzling", "determined", "distracted",
    "dreamy", "eager", "ecstatic", "elastic", "elated", "elegant", "eloquent", "epic", "exciting",
    "fervent", "festive", "flamboyant", "focused", "friendly", "frosty", "funny", "gallant", "gifted",
    "goofy", "gracious", "great", "happy", "hardcore", "heuristic", "hopeful", "hungry", "infallible",
    "inspiring", "intelligent", "interesting", "jolly", "jovial", "keen", "kind", "laughing", "loving",
    "lucid", "magical", "modest", "musing", "mystifying", "naughty", "nervous", "nice", "nifty",
    "nostalgic", "objective", "optimistic", "peaceful", "pedantic", "pensive", "practical", "priceless",
    "quirky", "quizzical", "recursing", "relaxed", "reverent", "romantic", "sad", "serene", "sharp",
    "silly", "sleepy", "stoic", "strange", "stupefied", "suspicious", "sweet", "tender", "thirsty",
    "trusting", "unruffled", "upbeat", "vibrant", "vigilant", "vigorous", "wizardly", "wonderful",
    "xenodochial", "youthful", "zealous", "zen",
)

SURNAMES = (
    "agnesi", "albattani", "allen", "almeida", "antonelli", "archimedes", "ardinghelli", "aryabhata",
    "austin", "babbage", "banach", "banzai", "bardeen", "bartik", "bassi", "beaver", "bell", "benz",
    "bhabha", "bhaskara", "black", "blackburn", "blackwell", "bohr", "booth", "borg", "bose", "bouman",
    "boyd", "brahmagupta", "brattain", "brown", "buck", "burnell", "cannon", "carson", "cartwright",
    "carver", "cerf", "chandrasekhar", "chaplygin", "chatelet", "chatterjee", "chaum", "chebyshev",
    "clarke", "cohen", "colden", "cori", "cray", "curie", "curran", "darwin", "davinci", "dewdney",
    "dhawan", "diffie", "dijkstra", "dirac", "driscoll", "dubinsky", "easley", "edison", "einstein",
    "elbakyan", "elgamal", "elion", "ellis", "engelbart", "euclid", "euler", "faraday", "feistel",
    "fermat", "fermi", "feynman", "franklin", "gagarin", "galileo", "galois", "ganguly", "gates",
    "gauss", "germain", "goldberg", "goldstine", "goldwasser", "golick", "goodall", "gould", "greider",
    "grothendieck", "haibt", "hamilton", "haslett", "hawking", "heisenberg", "hellman", "hermann",
    "herschel", "hertz", "heyrovsky", "hodgkin", "hofstadter", "hoover", "hopper", "hugle", "hypatia",
    "ishizaka", "jackson", "jang", "jemison", "jennings", "jepsen", "johnson", "joliot", "jones",
    "kalam", "kapitsa", "kare", "keldysh", "keller", "kepler", "khayyam", "khorana", "kilby", "kirch",
    "knuth", "kowalevski", "lalande", "lamarr", "lamport", "leakey", "leavitt", "lederberg", "lehmann",
    "lewin", "lichterman", "liskov", "lovelace", "lumiere", "mahavira", "margulis", "matsumoto",
    "maxwell", "mayer", "mccarthy", "mcclintock", "mclaren", "mclean", "mcnulty", "meitner", "mendel",
    "mendeleev", "meninsky", "merkle", "mestorf", "mirzakhani", "montalcini", "moore", "morse", "moser",
    "murdock", "napier", "nash", "neumann", "newton", "nightingale", "nobel", "noether", "northcutt",
    "noyce", "panini", "pare", "pascal", "pasteur", "payne", "perlman", "pike", "poincare", "poitras",
    "proskuriakova", "ptolemy", "raman", "ramanujan", "rhodes", "ride", "ritchie", "robinson",
    "roentgen", "rosalind", "rubin", "saha", "sammet", "sanderson", "satoshi", "shamir", "shannon",
    "shaw", "shirley", "shockley", "shtern", "sinoussi", "snyder", "solomon", "spence", "stonebraker",
    "sutherland", "swanson", "swartz", "swirles", "taussig", "tesla", "tharp", "thompson", "torvalds",
    "tu", "turing", "varahamihira", "vaughan", "villani", "visvesvaraya", "volhard", "wescoff",
    "wilbur", "wiles", "williams", "williamson", "wilson", "wing", "wozniak", "wright", "wu", "yalow",
    "yonath", "zhukovsky",
)


def validate_name(name: str) -> str:
    """``name`` in stored form ("/name"); InvalidArgument with Docker's message when invalid."""
    if not is_valid_name(name):
        raise errdefs.InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name if name.startswith("/") else "/" + name


def _random_below(limit: int) -> int:
    """A uniformly random integer in ``[0, limit)`` from the operating system's generator, as
    ``secrets.randbelow`` draws it (whose import, with hmac and random, costs ~3 ms a command)."""
    bits = limit.bit_length()
    while True:
        value = int.from_bytes(os.urandom((bits + 7) // 8), "big") >> (-bits % 8)
        if value < limit:
            return value


def random_name(retry: int = 0) -> str:
    """``adjective_surname``; from the second retry on a digit is appended, like Docker."""
    while True:
        name = f"{ADJECTIVES[_random_below(len(ADJECTIVES))]}_{SURNAMES[_random_below(len(SURNAMES))]}"
        if name != "boring_wozniak":
            break
    if retry > 0:
        name += str(_random_below(10))
    return name
