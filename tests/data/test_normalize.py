from textgen.data.normalize import POLICY_NAME, get_normalizer, normalize


def test_fullwidth_digits_and_letters_become_ascii():
    assert normalize("１９９８年") == "1998年"
    assert normalize("ＡＰＥＣ会议") == "APEC会议"
    assert normalize("增长１２．３％") == "增长12.3%"


def test_chinese_punctuation_survives_and_ascii_punctuation_joins_it():
    text = "你好，世界！（附图）：是吗？是；"
    assert normalize(text) == text
    assert normalize("你好,世界!(附图):是吗?是;") == text
    assert normalize("“引号”、顿号。——…") == "“引号”、顿号。——…"


def test_whitespace_and_controls():
    assert normalize("  a\u3000\u3000b\t c  \r\n\r\n\n第二段\x00\u200b ") == "a b c\n第二段"
    assert normalize("\ufeff开头") == "开头"


def test_idempotent_on_real_text():
    text = (
        "据最新统计，１９９７年１月至１１月份，来华旅游人数达５２３６万多人次，增长１２．３％。\n"
    )
    once = normalize(text)
    assert normalize(once) == once
    assert once.endswith("\n")


def test_policy_lookup():
    assert get_normalizer(POLICY_NAME) is normalize
    try:
        get_normalizer("nope")
    except ValueError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("unknown policy accepted")
