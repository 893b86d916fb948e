import Foundation

/// Formats benchmark results: a table for people, one JSON line for machines.
public enum BenchOutput {
  public static func table(_ results: [String: [String: Benchmark.Cell]], order: [String]) -> String {
    var lines = ["scenario                 unit       raw       inproc    framed    h2        framed/h2  framed p99 µs  h2 p99 µs"]
    for name in order {
      guard let row = results[name] else { continue }
      let unit = name == "streams_10k_idle" ? "RSS MB" : "ops/s"
      func v(_ c: String) -> String { String(format: "%-9.0f", row[c]?.value ?? 0) }
      let ratio = (row["h2"]?.value ?? 0) > 0 ? (row["framed"]?.value ?? 0) / row["h2"]!.value : 0
      lines.append(
        name.padding(toLength: 25, withPad: " ", startingAt: 0) + unit.padding(toLength: 11, withPad: " ", startingAt: 0)
          + "\(v("raw")) \(v("inproc")) \(v("framed")) \(v("h2")) " + String(format: "%-10.2f %-14d %d", ratio, row["framed"]?.p99 ?? 0, row["h2"]?.p99 ?? 0))
    }
    return lines.joined(separator: "\n")
  }

  public static func json(_ results: [String: [String: Benchmark.Cell]], quick: Bool) -> String {
    var scenarios: [String: Any] = [:]
    for (name, row) in results {
      var o: [String: Any] = [:]
      for (column, cell) in row {
        o[column] = name == "streams_10k_idle" ? cell.value : cell.value.rounded()
        if name != "streams_10k_idle" { o["\(column)_p99_us"] = cell.p99 }
      }
      if name == "streams_10k_idle" { o["unit"] = "MB server RSS (raw = idle server, inproc = in-process growth)" }
      scenarios[name] = o
    }
    var machine: [String: Any] = [
      "cores": ProcessInfo.processInfo.activeProcessorCount, "memory_gib": Int(ProcessInfo.processInfo.physicalMemory >> 30), "quick": quick,
    ]
    if let cpu = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
      let model = cpu.split(separator: "\n").first(where: { $0.hasPrefix("model name") })?.split(separator: ":").last
    {
      machine["cpu"] = model.trimmingCharacters(in: .whitespaces)
    }
    let data = (try? JSONSerialization.data(withJSONObject: ["scenarios": scenarios, "machine": machine], options: [.sortedKeys])) ?? Data()
    return String(decoding: data, as: UTF8.self)
  }
}
