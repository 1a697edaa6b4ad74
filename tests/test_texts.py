"""tf_extended.texts: values and lists as messages show them."""

import array
import builtins
import collections

import pytest

from tf_extended import texts


@pytest.mark.parametrize(
    'value',
    [
        'a' * 78,
        0.1,
        -(10**70),
        None,
        [1, [2, {'k': 3}]],
        b'\x00ab',
        {'x': 'y'},
        range(10**20, 10**20 + 1),  # a type reprlib has no method for: whole up to the limit
    ],
)
def test_a_value_that_fits_is_its_repr(value):
    assert texts.shown(value) == repr(value)


def test_a_long_string_keeps_its_start_and_end():
    """A path cut at its end lost its file name; at most `limit` characters, the mark inside."""
    path = '/data/VOCdevkit/VOC2007/' + 'x' * 100 + '/000001.xml'
    got = texts.shown(path)
    assert len(got) == 80
    assert got == repr(path)[:38] + '...' + repr(path)[-39:]
    assert texts.shown(path, limit=40) == repr(path)[:18] + '...' + repr(path)[-19:]


def test_a_long_list_is_cut_after_20_items_and_at_the_limit():
    assert texts.shown(list(range(30)), limit=200) == repr(list(range(20)))[:-1] + ', ...]'
    assert texts.shown(list(range(10**6))) == repr(list(range(20)))[:-1] + ', ...]'
    assert (
        texts.shown([str(i) * 9 for i in range(30)])
        == repr([str(i) * 9 for i in range(30)])[:77] + '...'
    )


@pytest.mark.parametrize(
    'kind',
    [
        list,
        tuple,
        set,
        frozenset,
        collections.deque,
        lambda v: {i: i for i in v},
        lambda v: array.array('i', v),
    ],
)
def test_every_container_kind_shows_its_first_20_items(kind):
    """reprlib's own caps are 4 to 6 items for dicts, sets, deques and arrays."""
    head, tail = repr(kind(range(20))).rsplit('19', 1)
    assert texts.shown(kind(range(30)), limit=1000) == head + '19, ...' + tail


def test_deep_or_shared_nesting_is_shown_three_levels_down():
    """A pickle's shared tuples nested 40 deep made repr() run for ever; JSON may nest 1000s."""
    shared = ()
    for _ in range(60):
        shared = (shared, shared)
    assert texts.shown([[[['deep']]]]) == '[[[[...]]]]'
    level = '((...), (...))'
    assert texts.shown(shared) == f'(({level}, {level}), ({level}, {level}))'


def test_only_the_shown_part_of_bytes_is_formatted():
    class bytes(builtins.bytes):  # reprlib picks its method by the type's name
        def __repr__(self):
            raise AssertionError('the whole value was formatted')

    assert texts.shown(bytes(b'ab' * 100)) == repr(b'ab' * 40)[:77] + '...'


def test_values_whose_repr_is_huge_or_fails_are_bounded():
    """bytes are cut before their repr; an int past Python's 4300-digit limit has no repr."""
    assert texts.shown(b'\xff' * 10**7) == repr(b'\xff' * 19)[:77] + '...'
    assert texts.shown(bytearray(b'\xff' * 10**7)) == repr(bytearray(b'\xff' * 20))[:77] + '...'
    assert texts.shown(7**10000) == f'<an integer of {(7**10000).bit_length()} bits>'
    assert texts.shown(10**70) == repr(10**70)
    assert texts.shown(10**100, limit=20) == repr(10**100)[:8] + '...' + repr(10**100)[-9:]


@pytest.mark.parametrize(
    'count, expected',
    [(2, 'a0, a1'), (3, 'a0, a1, a2'), (4, 'a0, a1, a2, a3'), (5, 'a0, a1, a2 and 2 more')],
)
def test_listed_names_the_rest_by_count(count, expected):
    assert texts.listed([f'a{i}' for i in range(count)], limit=3) == expected


def test_counted_says_one_in_the_singular():
    """The eval line said '1 images of pascalvoc_2007/test', the converter 'in 1 shards'."""
    assert [texts.counted(n, 'image') for n in (0, 1, 2)] == ['0 images', '1 image', '2 images']


@pytest.mark.parametrize(
    'text, expected', [('abcdef', 'abcdef'), ('abcdefg', 'abcdefg'), ('abcdefgh', 'abcd...')]
)
def test_cut_marks_where_it_cut(text, expected):
    assert texts.cut(text, 7) == expected
