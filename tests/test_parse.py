"""kws_streaming-style list flags parse as kws_streaming reads them."""

import pytest

from kws_jax.models.parse import check_same_length, parse_list


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
