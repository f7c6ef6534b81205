"""Formula engine: our own small parser and interpreter for charging-manager formulas (SPEC §2).

Invariants:
- Never executes Python: text is tokenised and parsed by hand into a tree of closures; there is no `eval`/`exec`.
- Bounded: at most MAX_LENGTH characters, MAX_TOKENS tokens and MAX_DEPTH levels of nesting; a formula that
  exceeds them is a syntax error, so a hostile expression cannot exhaust the stack or the CPU.
- Compile once (`compile_formula`), evaluate many times (`Formula.evaluate(lookup)`).
- Values are numbers; comparisons and logical operators give 1 or 0; a result that is not a finite number is an
  error. Integer literals of up to 15 digits stay integers, everything else is float, and `^` always computes in
  float, so no expression can build a huge integer.
- Errors are `FormulaError`: syntax errors carry the 1-based column (`position`) where the problem starts;
  evaluation errors (division by zero, unknown name, bad argument) carry `position` None.

Grammar, lowest precedence first (all binary operators left-associative except `?:` and `^`):
    cond ? a : b     ||     &&     |     &     == !=     < <= > >=     + -     * / %     unary - + !     ^
Atoms: numbers (`12`, `1.5`, `.5`, `2e3`), names (`AVAIL`, `M1.current_l1_ma`, `IN1`), `( expr )`, and calls of
min max abs clamp round floor ceil sqrt exists. `exists(name)` is 1 when the lookup can resolve the name, else 0.
`&` and `|` are bitwise on the integer parts of their operands.
This module never reads the clock, a file or the network; it runs under CPython and MicroPython.
"""

import math

MAX_LENGTH = 1024
MAX_TOKENS = 400
MAX_DEPTH = 32
MAX_NAME_LENGTH = 64


class FormulaError(Exception):
    """A syntax error (with a 1-based column) or an evaluation error (column None)."""

    def __init__(self, message, position=None):
        super().__init__(message)
        self.message = message
        self.position = position

    def __str__(self):
        if self.position is None:
            return self.message
        return "at position %d: %s" % (self.position, self.message)


class UnknownName(FormulaError):
    """The lookup could not resolve a name; `exists()` turns this into 0."""

    def __init__(self, name):
        super().__init__("unknown name '%s'" % name)
        self.name = name


# Token kinds
_NUM = "num"
_NAME = "name"
_OP = "op"
_END = "end"

_TWO_CHAR_OPS = ("==", "!=", "<=", ">=", "&&", "||")
_ONE_CHAR_OPS = "+-*/%^&|<>!?:(),"


def _is_name_start(ch):
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ch == "_"


def _is_name_char(ch):
    return _is_name_start(ch) or ("0" <= ch <= "9")


def _is_digit(ch):
    return "0" <= ch <= "9"


def _tokenize(text):
    """Split text into (kind, value, column) tuples; column is 1-based."""
    tokens = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == " " or ch == "\t" or ch == "\n" or ch == "\r":
            i += 1
            continue
        start = i
        if _is_digit(ch) or (ch == "." and i + 1 < n and _is_digit(text[i + 1])):
            while i < n and _is_digit(text[i]):
                i += 1
            is_float = False
            if i < n and text[i] == ".":
                is_float = True
                i += 1
                while i < n and _is_digit(text[i]):
                    i += 1
            if i < n and (text[i] == "e" or text[i] == "E"):
                j = i + 1
                if j < n and (text[j] == "+" or text[j] == "-"):
                    j += 1
                if j < n and _is_digit(text[j]):
                    is_float = True
                    i = j
                    while i < n and _is_digit(text[i]):
                        i += 1
                else:
                    raise FormulaError("malformed number exponent", i + 1)
            if i < n and (_is_name_start(text[i]) or text[i] == "."):
                raise FormulaError("malformed number", start + 1)
            literal = text[start:i]
            if not is_float and len(literal) <= 15:
                value = int(literal)
            else:
                value = float(literal)
            tokens.append((_NUM, value, start + 1))
        elif _is_name_start(ch):
            while i < n and (_is_name_char(text[i]) or (text[i] == "." and i + 1 < n and _is_name_start(text[i + 1]))):
                i += 1
            name = text[start:i]
            if len(name) > MAX_NAME_LENGTH:
                raise FormulaError("name longer than %d characters" % MAX_NAME_LENGTH, start + 1)
            tokens.append((_NAME, name, start + 1))
        else:
            pair = text[i:i + 2]
            if pair in _TWO_CHAR_OPS:
                tokens.append((_OP, pair, start + 1))
                i += 2
            elif ch in _ONE_CHAR_OPS:
                tokens.append((_OP, ch, start + 1))
                i += 1
            else:
                raise FormulaError("unexpected character %r" % ch, start + 1)
        if len(tokens) > MAX_TOKENS:
            raise FormulaError("formula has more than %d tokens" % MAX_TOKENS, start + 1)
    tokens.append((_END, None, n + 1))
    return tokens


def _finite(value):
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        raise FormulaError("result is not a finite number")
    return value


def _truth(value):
    return value != 0


# Binary operator implementations; each returns a number.
def _add(a, b):
    return a + b


def _sub(a, b):
    return a - b


def _mul(a, b):
    return _finite(a * b)


def _div(a, b):
    if b == 0:
        raise FormulaError("division by zero")
    return _finite(a / b)


def _mod(a, b):
    if b == 0:
        raise FormulaError("modulo by zero")
    return a % b


def _pow(a, b):
    try:
        result = float(a) ** float(b)
    except (OverflowError, ZeroDivisionError):
        raise FormulaError("power out of range")
    if not isinstance(result, float):
        raise FormulaError("power of a negative number to a fractional exponent")
    if math.isinf(result) or math.isnan(result):
        raise FormulaError("power out of range")
    return result


def _as_int(value):
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            raise FormulaError("bitwise operand is not finite")
        if abs(value) > 9007199254740992.0:
            raise FormulaError("bitwise operand out of range")
    return int(value)


def _band(a, b):
    return _as_int(a) & _as_int(b)


def _bor(a, b):
    return _as_int(a) | _as_int(b)


def _eq(a, b):
    return 1 if a == b else 0


def _ne(a, b):
    return 1 if a != b else 0


def _lt(a, b):
    return 1 if a < b else 0


def _le(a, b):
    return 1 if a <= b else 0


def _gt(a, b):
    return 1 if a > b else 0


def _ge(a, b):
    return 1 if a >= b else 0


_BINARY = {
    "+": _add, "-": _sub, "*": _mul, "/": _div, "%": _mod,
    "&": _band, "|": _bor,
    "==": _eq, "!=": _ne, "<": _lt, "<=": _le, ">": _gt, ">=": _ge,
}

# Precedence of the left-associative binary operators (higher binds tighter).
_PRECEDENCE = {
    "||": 1, "&&": 2, "|": 3, "&": 4, "==": 5, "!=": 5, "<": 6, "<=": 6, ">": 6, ">=": 6,
    "+": 7, "-": 7, "*": 8, "/": 8, "%": 8,
}


def _fn_min(args):
    return min(args)


def _fn_max(args):
    return max(args)


def _fn_abs(args):
    return abs(args[0])


def _fn_clamp(args):
    x, lo, hi = args
    if lo > hi:
        raise FormulaError("clamp: lower bound above upper bound")
    return lo if x < lo else (hi if x > hi else x)


def _fn_round(args):
    if len(args) == 1:
        return int(math.floor(args[0] + 0.5))
    digits = int(args[1])
    if digits < 0 or digits > 12:
        raise FormulaError("round: digits must be between 0 and 12")
    scale = 10 ** digits
    return math.floor(args[0] * scale + 0.5) / scale


def _fn_floor(args):
    return int(math.floor(args[0]))


def _fn_ceil(args):
    return int(math.ceil(args[0]))


def _fn_sqrt(args):
    if args[0] < 0:
        raise FormulaError("sqrt of a negative number")
    return math.sqrt(args[0])


# name: (function, min args, max args or None for any)
_FUNCTIONS = {
    "min": (_fn_min, 1, None),
    "max": (_fn_max, 1, None),
    "abs": (_fn_abs, 1, 1),
    "clamp": (_fn_clamp, 3, 3),
    "round": (_fn_round, 1, 2),
    "floor": (_fn_floor, 1, 1),
    "ceil": (_fn_ceil, 1, 1),
    "sqrt": (_fn_sqrt, 1, 1),
}


def _checked_float(value):
    """Large floats would turn into huge ints in floor/ceil/round; refuse them."""
    if value.__class__ is float and not (-1e300 <= value <= 1e300):
        raise FormulaError("argument out of range")
    return value


class _Parser:
    def __init__(self, text):
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0
        self.names = []

    def peek(self):
        return self.tokens[self.index]

    def advance(self):
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, op):
        token = self.advance()
        if token[0] != _OP or token[1] != op:
            raise FormulaError("expected '%s' but found %s" % (op, _describe(token)), token[2])
        return token

    def enter(self, token):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FormulaError("formula nested deeper than %d levels" % MAX_DEPTH, token[2])

    def leave(self):
        self.depth -= 1

    def parse(self):
        node = self.conditional()
        token = self.peek()
        if token[0] != _END:
            raise FormulaError("unexpected %s" % _describe(token), token[2])
        return node

    def conditional(self):
        cond = self.binary(1)
        token = self.peek()
        if not (token[0] == _OP and token[1] == "?"):
            return cond
        self.advance()
        self.enter(token)  # `a ? b : c ? d : e` recurses, so it counts as nesting
        if_true = self.conditional()
        self.expect(":")
        if_false = self.conditional()
        self.leave()
        return _make_conditional(cond, if_true, if_false)

    def binary(self, min_precedence):
        """Precedence climbing: one Python frame per operator nesting, not per precedence level (MicroPython's
        stack is small)."""
        left = self.unary()
        while True:
            token = self.peek()
            precedence = _PRECEDENCE.get(token[1]) if token[0] == _OP else None
            if precedence is None or precedence < min_precedence:
                return left
            self.advance()
            right = self.binary(precedence + 1)
            op = token[1]
            if op == "&&":
                left = _make_and(left, right)
            elif op == "||":
                left = _make_or(left, right)
            else:
                left = _make_binary(_BINARY[op], left, right)

    def unary(self):
        token = self.peek()
        if token[0] == _OP and token[1] in ("-", "+", "!"):
            self.advance()
            self.enter(token)
            operand = self.unary()
            self.leave()
            if token[1] == "-":
                return _make_negate(operand)
            if token[1] == "!":
                return _make_not(operand)
            return operand
        return self.power()

    def power(self):
        base = self.atom()
        token = self.peek()
        if token[0] == _OP and token[1] == "^":
            self.advance()
            self.enter(token)
            exponent = self.unary()  # right-associative, and 2^-1 is allowed
            self.leave()
            return _make_binary(_pow, base, exponent)
        return base

    def atom(self):
        token = self.advance()
        kind, value, column = token
        if kind == _NUM:
            return _make_constant(value)
        if kind == _NAME:
            nxt = self.peek()
            if nxt[0] == _OP and nxt[1] == "(":
                return self.call(token)
            self.names.append(value)
            return _make_name(value)
        if kind == _OP and value == "(":
            self.enter(token)
            node = self.conditional()
            self.expect(")")
            self.leave()
            return node
        raise FormulaError("unexpected %s" % _describe(token), column)

    def call(self, name_token):
        name = name_token[1]
        self.advance()  # "("
        self.enter(name_token)
        if name == "exists":
            arg = self.advance()
            if arg[0] != _NAME:
                raise FormulaError("exists() takes a name", arg[2])
            self.expect(")")
            self.leave()
            return _make_exists(arg[1])
        entry = _FUNCTIONS.get(name)
        if entry is None:
            raise FormulaError("unknown function '%s'" % name, name_token[2])
        function, min_args, max_args = entry
        args = []
        token = self.peek()
        if not (token[0] == _OP and token[1] == ")"):
            while True:
                args.append(self.conditional())
                token = self.peek()
                if token[0] == _OP and token[1] == ",":
                    self.advance()
                    continue
                break
        self.expect(")")
        self.leave()
        if len(args) < min_args or (max_args is not None and len(args) > max_args):
            if max_args is None:
                wanted = "at least %d" % min_args
            elif min_args == max_args:
                wanted = "%d" % min_args
            else:
                wanted = "%d to %d" % (min_args, max_args)
            raise FormulaError("%s() takes %s argument(s), got %d" % (name, wanted, len(args)), name_token[2])
        return _make_call(function, args)


def _describe(token):
    kind, value, _ = token
    if kind == _END:
        return "end of formula"
    if kind == _NUM:
        return "number %s" % value
    if kind == _NAME:
        return "name '%s'" % value
    return "'%s'" % value


# Node builders: each returns a closure `node(lookup) -> number`.
def _make_constant(value):
    def node(lookup):
        return value
    return node


def _make_name(name):
    def node(lookup):
        return lookup(name)
    return node


def _make_exists(name):
    def node(lookup):
        try:
            lookup(name)
        except FormulaError:
            return 0
        return 1
    return node


def _make_binary(function, left, right):
    def node(lookup):
        return function(left(lookup), right(lookup))
    return node


def _make_and(left, right):
    def node(lookup):
        return 1 if (_truth(left(lookup)) and _truth(right(lookup))) else 0
    return node


def _make_or(left, right):
    def node(lookup):
        return 1 if (_truth(left(lookup)) or _truth(right(lookup))) else 0
    return node


def _make_not(operand):
    def node(lookup):
        return 0 if _truth(operand(lookup)) else 1
    return node


def _make_negate(operand):
    def node(lookup):
        return -operand(lookup)
    return node


def _make_conditional(cond, if_true, if_false):
    def node(lookup):
        return if_true(lookup) if _truth(cond(lookup)) else if_false(lookup)
    return node


def _make_call(function, args):
    if len(args) == 1:
        only = args[0]

        def node(lookup):
            return function((_checked_float(only(lookup)),))
        return node
    if len(args) == 2:
        first, second = args

        def node(lookup):
            return function((_checked_float(first(lookup)), _checked_float(second(lookup))))
        return node

    def node(lookup):
        return function([_checked_float(arg(lookup)) for arg in args])
    return node


class Formula:
    """A compiled formula: `text`, the `names` it reads, `constant` (number or None) and `evaluate(lookup)`."""

    def __init__(self, text, root, names):
        self.text = text
        self._root = root
        self.names = names
        self.constant = None  # the value, when the formula reads no name and evaluates without error
        if not names:
            try:
                self.constant = self.evaluate(_no_names)
            except FormulaError:
                pass

    def evaluate(self, lookup):
        """Evaluate with `lookup(name) -> number` (which raises FormulaError/UnknownName); returns a number."""
        try:
            value = self._root(lookup)
        except FormulaError:
            raise
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise FormulaError("cannot compute: %s" % exc)
        return _finite(value)


def _no_names(name):
    raise UnknownName(name)


def compile_formula(text):
    """Parse formula text into a Formula; raises FormulaError with the 1-based column of the problem."""
    if not isinstance(text, str):
        raise FormulaError("formula must be a string")
    if len(text) > MAX_LENGTH:
        raise FormulaError("formula longer than %d characters" % MAX_LENGTH, MAX_LENGTH + 1)
    if not text.strip():
        raise FormulaError("empty formula", 1)
    parser = _Parser(text)
    root = parser.parse()
    names = []
    for name in parser.names:
        if name not in names:
            names.append(name)
    return Formula(text, root, names)


def constant_formula(value):
    """A Formula that is just a number (for settings given as a JSON number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormulaError("expected a number")
    _finite(value)
    return Formula(repr(value), _make_constant(value), [])


def is_function_name(name):
    return name in _FUNCTIONS or name == "exists"
