"""Intermediate-step checking (MR-GSM8K style, Zeng et al. 2023, arXiv 2312.17080).

Finds arithmetic claims ``a op b [op c ...] = r`` in a solution (``x``/``×``/``÷`` and ``$``/thousands
commas accepted, GSM8K ``<<a*b=c>>`` annotations included), evaluates the left side exactly and checks
the claim. An integer result must be exact; a decimal result may be rounded at its own precision
("10 / 3 = 3.33" holds). Reports the step accuracy and the first wrong step (1-based), which tells a
right answer reached through a wrong step from a sound derivation.
"""

from __future__ import annotations

import ast
import operator
import re
from typing import Any

_NUM = r"\$?\d+(?:,\d{3})*(?:\.\d+)?"
_OP = r"[-+*/×÷x]"
_EXPR = rf"\(*\s*{_NUM}\s*\)*(?:\s*{_OP}\s*\(*\s*{_NUM}\s*\)*)+"
# Not inside a longer expression (no digit/paren/letter just before), and the result is not itself the
# start of more arithmetic ("14 * 1/2 = 14 / 2 = 7") or a mixed number ("3 1/2").
CLAIM = re.compile(rf"(?<![\w.,$()])(?<!\d )(-?{_EXPR})\s*=\s*(-?{_NUM})(?![\d])(?!\s*{_OP}\s*\(*\d)(?!\s+\d+/\d)")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.USub: operator.neg, ast.UAdd: operator.pos}


def safe_eval(expr: str) -> float | None:
    """Value of an arithmetic expression of numbers, + - * / and parentheses; None if it is not one."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return None

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.operand))
        raise ValueError("not arithmetic")

    try:
        return walk(tree)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def _clean(expr: str) -> str:
    expr = expr.replace("×", "*").replace("÷", "/").replace("$", "").replace(",", "")
    expr = re.sub(r"(?<=[\d)\s])x(?=[\s\d(])", "*", expr)
    while expr.count("(") > expr.count(")") and expr.lstrip().startswith("("):
        expr = expr.lstrip()[1:]
    while expr.count(")") > expr.count("(") and expr.rstrip().endswith(")"):
        expr = expr.rstrip()[:-1]
    return expr.strip()


def claim_holds(value: float, claimed: str) -> bool:
    """Exact for an integer claim; within half a unit of the claim's last decimal otherwise."""
    text = claimed.replace("$", "").replace(",", "")
    decimals = len(text.split(".")[1]) if "." in text else 0
    tolerance = 0.5 * 10 ** -decimals + 1e-9 if decimals else 1e-9
    return abs(value - float(text)) <= tolerance


def find_claims(text: str) -> list[dict[str, Any]]:
    """Every checkable claim in ``text``: {"claim", "expr", "claimed", "value", "ok"}."""
    claims = []
    for match in CLAIM.finditer(text):
        expr, claimed = _clean(match.group(1)), match.group(2)
        value = safe_eval(expr)
        if value is None:
            continue
        claims.append({"claim": match.group(0).strip(), "expr": expr.strip(), "claimed": claimed,
                       "value": value, "ok": claim_holds(value, claimed)})
    return claims


def check_steps(text: str) -> dict[str, Any]:
    """Step accuracy and the first wrong step (1-based; None when every claim holds or none exist)."""
    claims = find_claims(text)
    wrong = [i for i, c in enumerate(claims) if not c["ok"]]
    return {"n_steps": len(claims), "n_correct": len(claims) - len(wrong),
            "first_wrong": wrong[0] + 1 if wrong else None, "claims": claims}
