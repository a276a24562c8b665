//! Variable-length parts of a packet without allocation.
//!
//! A decoded packet cannot own a `Vec`, so its lists (user properties, subscription identifiers,
//! topic filters, reason codes) stay as the validated wire bytes and are parsed again while iterating.
//! A packet built for encoding holds a plain slice instead. Both forms iterate, compare and encode the
//! same way, so code that handles packets never cares which one it has.

use core::fmt;
use core::marker::PhantomData;

/// An element of a [`List`], readable from validated wire bytes.
pub trait WireItem<'a>: Copy + Sized {
    /// Reads the next element and advances `buf`; `None` at the end.
    ///
    /// Only called on bytes that the decoder already validated, so it never reports errors.
    fn read_next(buf: &mut &'a [u8]) -> Option<Self>;
}

/// A list that is either still encoded (as received) or a slice of values (to be sent).
#[derive(Clone, Copy)]
pub enum List<'a, T> {
    /// Validated wire bytes, parsed lazily.
    Wire(&'a [u8], PhantomData<T>),
    /// Values supplied by the caller.
    Items(&'a [T]),
}

impl<'a, T> List<'a, T> {
    /// A list of caller-supplied values.
    pub const fn new(items: &'a [T]) -> Self {
        List::Items(items)
    }

    pub(crate) const fn wire(bytes: &'a [u8]) -> Self {
        List::Wire(bytes, PhantomData)
    }
}

impl<T> List<'_, T> {
    /// Empty without parsing: no items, or no wire bytes.
    #[inline(always)]
    pub(crate) fn trivially_empty(&self) -> bool {
        match self {
            List::Wire(bytes, _) => bytes.is_empty(),
            List::Items(items) => items.is_empty(),
        }
    }
}

impl<T> Default for List<'_, T> {
    fn default() -> Self {
        List::Items(&[])
    }
}

impl<'a, T: WireItem<'a>> List<'a, T> {
    /// Iterates over the elements.
    pub fn iter(&self) -> ListIter<'a, T> {
        match *self {
            List::Wire(bytes, _) => ListIter::Wire(bytes, PhantomData),
            List::Items(items) => ListIter::Items(items.iter()),
        }
    }

    /// Number of elements (walks the list when encoded).
    pub fn len(&self) -> usize {
        match self {
            List::Items(items) => items.len(),
            List::Wire(..) => self.iter().count(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl<'a, T: WireItem<'a>> IntoIterator for &List<'a, T> {
    type Item = T;
    type IntoIter = ListIter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T: WireItem<'a> + PartialEq> PartialEq for List<'a, T> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<'a, T: WireItem<'a> + Eq> Eq for List<'a, T> {}

impl<'a, T: WireItem<'a> + fmt::Debug> fmt::Debug for List<'a, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterator over a [`List`].
pub enum ListIter<'a, T> {
    /// Over wire bytes.
    Wire(&'a [u8], PhantomData<T>),
    /// Over a slice.
    Items(core::slice::Iter<'a, T>),
}

impl<'a, T: WireItem<'a>> Iterator for ListIter<'a, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        match self {
            ListIter::Wire(bytes, _) => T::read_next(bytes),
            ListIter::Items(it) => it.next().copied(),
        }
    }
}

impl<'a> WireItem<'a> for &'a str {
    fn read_next(buf: &mut &'a [u8]) -> Option<Self> {
        let mut r = crate::wire::Reader::new(buf);
        let s = r.string().ok()?;
        *buf = r.rest();
        Some(s)
    }
}

impl<'a> WireItem<'a> for crate::ReasonCode {
    fn read_next(buf: &mut &'a [u8]) -> Option<Self> {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        crate::ReasonCode::from_u8(b)
    }
}
