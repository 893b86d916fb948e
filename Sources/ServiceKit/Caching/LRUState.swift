/// The cache's state under its lock: entries in slots linked most- to least-recently used,
/// a key index, a tag index, and the invalidation epochs that tickets are checked against.
struct LRUState<Key: Hashable, Value> {
  struct Slot {
    var entry: Entry<Key, Value>?
    var previous: Int?
    var next: Int?
    var value: Value { self.entry!.value }
    var expires: ContinuousClock.Instant { self.entry!.expires }
  }

  var slots: [Slot] = []
  var free: [Int] = []
  var index: [Key: Int] = [:]
  var byTag: [String: Set<Int>] = [:]
  var head: Int?
  var tail: Int?
  var bytes = 0
  var stats = ResponseCacheStatistics()

  /// Bumped by every invalidation; a ticket is the epoch when it was taken.
  var epoch: UInt64 = 0
  /// Tickets older than this are refused whatever their tags (after a flush, or when the
  /// per-tag record below was pruned).
  var floor: UInt64 = 0
  /// The epoch of each tag's latest invalidation, kept for at most `maxTagEpochs` tags.
  var tagEpochs: [String: UInt64] = [:]
  static var maxTagEpochs: Int { 4096 }

  func accepts(ticket: UInt64, tags: Set<String>) -> Bool {
    guard ticket >= self.floor else { return false }
    return tags.allSatisfy { (self.tagEpochs[$0] ?? 0) <= ticket }
  }

  mutating func invalidated(tag: String) {
    if self.tagEpochs.count >= Self.maxTagEpochs {
      // Forgetting which tags were invalidated when would let a stale fill in; refusing
      // every fill that started before now is the safe way to forget.
      self.tagEpochs = [:]
      self.floor = self.epoch
    }
    self.tagEpochs[tag] = self.epoch
  }

  mutating func add(_ entry: Entry<Key, Value>) {
    let slot: Int
    if let reused = self.free.popLast() {
      slot = reused
      self.slots[slot] = Slot(entry: entry)
    } else {
      slot = self.slots.count
      self.slots.append(Slot(entry: entry))
    }
    self.index[entry.key] = slot
    for tag in entry.tags { self.byTag[tag, default: []].insert(slot) }
    self.bytes += entry.bytes
    self.linkFront(slot)
  }

  mutating func remove(_ slot: Int) {
    guard let entry = self.slots[slot].entry else { return }
    self.unlink(slot)
    self.index.removeValue(forKey: entry.key)
    for tag in entry.tags {
      self.byTag[tag]?.remove(slot)
      if self.byTag[tag]?.isEmpty == true { self.byTag.removeValue(forKey: tag) }
    }
    self.bytes -= entry.bytes
    self.slots[slot] = Slot()
    self.free.append(slot)
  }

  mutating func removeAll() {
    self.slots = []
    self.free = []
    self.index = [:]
    self.byTag = [:]
    self.head = nil
    self.tail = nil
    self.bytes = 0
  }

  mutating func moveToFront(_ slot: Int) {
    guard self.head != slot else { return }
    self.unlink(slot)
    self.linkFront(slot)
  }

  private mutating func linkFront(_ slot: Int) {
    self.slots[slot].previous = nil
    self.slots[slot].next = self.head
    if let head = self.head { self.slots[head].previous = slot }
    self.head = slot
    if self.tail == nil { self.tail = slot }
  }

  private mutating func unlink(_ slot: Int) {
    let previous = self.slots[slot].previous
    let next = self.slots[slot].next
    if let previous { self.slots[previous].next = next } else { self.head = next }
    if let next { self.slots[next].previous = previous } else { self.tail = previous }
    self.slots[slot].previous = nil
    self.slots[slot].next = nil
  }
}
