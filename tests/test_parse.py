"""kws_streaming-style list flags parse as kws_streaming reads them."""

import ast

import pytest

from kws_jax.models.parse import check_same_length, parse_list, parse_literal


@pytest.mark.parametrize('value, kind, expected', [
    ('64,64,128', 'int', [64, 64, 128]),
    ('64', 'int', [64]),
    ('', 'int', []),
    ((32, 16), 'int', [32, 16]),
    ('(3,3),(5,3)', 'pair', [(3, 3), (5, 3)]),
    ('(3,3)', 'pair', [(3, 3)]),
    ([[3, 3], [5, 1]], 'pair', [(3, 3), (5, 1)]),
    ("'relu','linear'", 'str', ['relu', 'linear']),
    ("'relu'", 'str', ['relu']),
    ('relu, linear', 'str', ['relu', 'linear']),
    ('0.1,1', 'float', [0.1, 1.0]),
])
def test_parses(value, kind, expected):
  assert parse_list('model.x', value, kind) == expected


@pytest.mark.parametrize('value, kind, fragment', [
    ('(3,3),(5,3', 'pair', "model.x: cannot parse '(3,3),(5,3'"),
    ('64,abc', 'int', "model.x: cannot parse '64,abc'"),
    ('64,3.5', 'int', 'model.x: element 3.5 is not valid; expected '
     'comma-separated ints'),
    ('(3,3),(5,3,1)', 'pair', 'element (5, 3, 1) is not valid'),
    ("'relu',''", 'str', "element '' is not valid"),
])
def test_rejects_with_field_and_value(value, kind, fragment):
  with pytest.raises(ValueError) as error:
    parse_list('model.x', value, kind)
  assert fragment in str(error.value)


def test_unequal_lengths_are_named():
  assert check_same_length('model', {'a': [1, 2], 'b': [3, 4]}) == 2
  with pytest.raises(ValueError) as error:
    check_same_length('model', {'units2': [1, 2, 3], 'act2': ['relu']})
  assert str(error.value) == ('model: these lists must have the same length, '
                              'but units2 has 3, act2 has 1 entries.')


@pytest.mark.parametrize('text', [
    '64,64,128', '64', '(3,3),(5,3)', '(3,3)', "'relu','linear'", "'relu'",
    '0.01,0.001', '1e-3,2.5E2', '-1,+2', '[1,2]', '[(1,2),(3,4)]', '(1,)',
    '1,', '()', '[]', '((1,2),)', '"a b", \'c\'', '.5', '3.', ' 4 , 5 ',
    '(3)', '[[1,2],[3,4]]'])
def test_literals_read_as_python_reads_them(text):
  # Our parser stands in for ast.literal_eval (not thread-safe in CPython
  # 3.11); it must read these strings the same, types included.
  expected = ast.literal_eval(text)
  parsed = parse_literal(text)
  assert parsed == expected
  assert type(parsed) is type(expected)


@pytest.mark.parametrize('text', ['(3,3),(5,3', '64,abc', 'relu', '1 2',
                                  '(1,2', '', ',', '1,,2', '[1,2)', "'a"])
def test_malformed_literals_are_refused(text):
  with pytest.raises(ValueError):
    parse_literal(text)
