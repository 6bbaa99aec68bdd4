"""Chinese numbers read out in characters, as XTTS-v2's text cleaning does before pinyin.

Digits in dates, money, phone numbers, fractions, percentages, counted things and plain numbers
become their Chinese readings (coqui TTS ``zh_num2words``), so that the same ids come out of
:mod:`xtts_jax.text.xtts_tokenizer` as out of XTTS-v2's own tokenizer.
"""

from __future__ import annotations

import re
import string


# The rules of coqui's zh_num2words (TextNorm with its defaults, after Jiayu Du's chn_text_norm): dates, money, phone numbers, fractions, percentages, counted things, long digit
# strings, other numbers, in that order; then every punctuation mark becomes a comma.
_ZH_DIGITS = "零一二三四五六七八九"
# The "mid" numbering: 十 百 千 万, then 亿 = 10^8, 兆 = 10^12, ... each 10^4 times the one before.
_ZH_UNITS = {1: "十", 2: "百", 3: "千", 4: "万"} | {4 * (i + 2): u for i, u in enumerate("亿兆京垓秭穰沟涧正载")}
_ZH_CURRENCY_UNITS = r"((亿|千万|百万|万|千|百)|(亿|千万|百万|万|千|百|)元|(亿|千万|百万|万|千|百|)块|角|毛|分)"
_ZH_QUANTIFIERS = (
    "(匹|张|座|回|场|尾|条|个|首|阙|阵|网|炮|顶|丘|棵|只|支|袭|辆|挑|担|颗|壳|窠|曲|墙|群|腔|"
    "砣|座|客|贯|扎|捆|刀|令|打|手|罗|坡|山|岭|江|溪|钟|队|单|双|对|出|口|头|脚|板|跳|枝|件|贴|"
    "针|线|管|名|位|身|堂|课|本|页|家|户|层|丝|毫|厘|分|钱|两|斤|担|铢|石|钧|锱|忽|(千|毫|微)克|"
    "毫|厘|分|寸|尺|丈|里|寻|常|铺|程|(千|分|厘|毫|微)米|撮|勺|合|升|斗|石|盘|碗|碟|叠|桶|笼|盆|"
    "盒|杯|钟|斛|锅|簋|篮|盘|桶|罐|瓶|壶|卮|盏|箩|箱|煲|啖|袋|钵|年|月|日|季|刻|时|周|天|秒|分|旬|"
    "纪|岁|世|更|夜|春|夏|秋|冬|代|伏|辈|丸|泡|粒|颗|幢|堆|条|根|支|道|面|片|张|颗|块)"
)
_ZH_PUNCTUATION = ("！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃《》「」『』【】〔〕〖〗〘〙〚〛"
                   "〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏·〈〉-" + string.punctuation)
_ZH_TO_COMMA = str.maketrans(_ZH_PUNCTUATION, "," * len(_ZH_PUNCTUATION))


def _zh_symbols(digits: str) -> list[tuple[str, int]]:
    """A digit string as ("digit", d) and ("unit", power) symbols, zeros read where they fall inside."""
    stripped = digits.lstrip("0")
    if len(stripped) <= 1:
        return [("digit", 0)] * (len(digits) > len(stripped) > 0) + [("digit", int(c)) for c in stripped]
    power = max(p for p in _ZH_UNITS if p < len(stripped))
    return _zh_symbols(digits[:-power]) + [("unit", power)] + _zh_symbols(stripped[-power:])


def _zh_number(number: str, units: bool = True) -> str:
    """``number`` ("2005", "12.5") in characters: with units (两千零五) or digit by digit (二零零五)."""
    integer, _, decimals = number.partition(".")
    symbols = _zh_symbols(integer) if units and len(integer) > 1 else [("digit", int(c)) for c in integer]
    if decimals:
        symbols += [("point", 0)] + [("digit", int(c)) for c in decimals]
    chars = []
    for i, (kind, value) in enumerate(symbols):
        if kind == "unit":
            chars.append(_ZH_UNITS[value])
        elif kind == "point":
            chars.append("点")
        else:
            before = symbols[i - 1] if i > 0 else ("unit", 0)  # the start counts as a unit other than 十
            after = symbols[i + 1] if i + 1 < len(symbols) else ("end", 0)
            # 两 for a 2 just before 百, 千, 万... and not just after 十: 两千, 一万两千, but 二十, 十二万.
            liang = units and value == 2 and after[0] == before[0] == "unit" and after[1] != 1 and before[1] != 1
            chars.append("两" if liang else _ZH_DIGITS[value])
    text = "".join(chars)
    if text.startswith("点"):
        return "零" + text
    return text[1:] if text.startswith("一十") else text  # 十二, not 一十二


def _zh_date(date: str) -> str:
    year, has_year, rest = date.partition("年")
    text = _zh_number(year, units=False) + "年" if has_year else ""
    if not has_year:
        rest = date
    if rest:
        month, _, day = rest.partition("月")
        text += _zh_number(month) + "月" + (_zh_number(day[:-1]) + day[-1] if day else "")
    return text


def _zh_money(money: str) -> str:
    for number, _ in re.findall(r"(\d+(\.\d+)?)", money):
        money = money.replace(number, _zh_number(number))
    return money


_ZH_RULES = (  # (pattern, which group is the match, how to read it)
    (r"\D+((([089]\d|(19|20)\d{2})年)?(\d{1,2}月(\d{1,2}[日号])?)?)", 0, _zh_date),
    (r"\D+((\d+(\.\d+)?)[多余几]?" + _ZH_CURRENCY_UNITS + r"(\d" + _ZH_CURRENCY_UNITS + r"?)?)", 0, _zh_money),
    (r"\D((\+?86 ?)?1([38]\d|5[0-35-9]|7[678]|9[89])\d{8})\D", 0, lambda s: _zh_number(re.sub(r"\D", "", s), False)),
    (r"\D((0(10|2[1-3]|[3-9]\d{2})-?)?[1-9]\d{6,7})\D", 0, lambda s: _zh_number(re.sub(r"\D", "", s), False)),
    (r"(\d+/\d+)", None, lambda s: _zh_number(s.split("/")[1]) + "分之" + _zh_number(s.split("/")[0])),
    (r"(\d+(\.\d+)?%)", 0, lambda s: "百分之" + _zh_number(s.strip("%"))),
    (r"(\d+(\.\d+)?)[多余几]?" + _ZH_QUANTIFIERS, 0, _zh_number),
    (r"(\d{4,32})", None, lambda s: _zh_number(s, units=False)),
    (r"(\d+(\.\d+)?)", 0, _zh_number),
    (r"(([a-zA-Z]+)二([a-zA-Z]+))", 0, lambda s: s.replace("二", "2", 1)),  # P2P, B2B stay as they were
)


def chinese_numbers(text: str) -> str:
    """coqui's Chinese normalisation: numbers read in characters, punctuation turned into commas."""
    text = "^" + text.replace("％", "%") + "$"  # the anchors give the patterns' \D a character at either end
    for pattern, group, read in _ZH_RULES:
        # As coqui: each match rewrites the first place its text occurs, wherever that is.
        for found in re.findall(pattern, text):
            found = found if group is None else found[group]
            if found:
                text = text.replace(found, read(found), 1)
    return text.lstrip("^").rstrip("$").translate(_ZH_TO_COMMA)
