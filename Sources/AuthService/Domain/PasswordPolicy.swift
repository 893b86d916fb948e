/// What a password must be to be accepted at registration.
package enum PasswordPolicy {
  package static let minLength = 10
  /// Long enough for any passphrase, short enough that hashing can't be abused (bytes).
  package static let maxBytes = 1024

  /// A small list of the most common passwords of policy length (from public breach top
  /// lists); a real deployment can add a bigger list, the rule stays the same.
  static let commonPasswords: Set<String> = [
    "1234567890", "12345678910", "123456789a", "qwertyuiop", "1q2w3e4r5t", "password12", "password123",
    "password1234", "passw0rd123", "iloveyou12", "abcdefghij", "0987654321", "1111111111", "0000000000",
    "qwerty1234", "qwerty123456", "1qaz2wsx3edc", "asdfghjkl1", "zxcvbnm123", "letmein123", "welcome123",
    "admin12345", "administrator", "football123", "baseball123", "superman123", "princess123", "sunshine123",
    "trustno1234", "dragon1234", "monkey1234", "starwars123", "whatever123", "changeme123", "p@ssw0rd123",
    "Password123", "Password1!", "Passw0rd!!", "qwertyuiop123", "q1w2e3r4t5", "1234qwerasdf", "aaaaaaaaaa",
    "abc1234567", "abcd123456", "michael123", "jennifer123", "computer123", "internet123", "quizwire123",
  ]

  /// What is wrong with `password` for the account `email` (already normalized); empty when
  /// it is acceptable.
  package static func violations(_ password: String, email: String?) -> [String] {
    var problems: [String] = []
    if password.count < Self.minLength { problems.append("must be at least \(Self.minLength) characters") }
    if password.utf8.count > Self.maxBytes { problems.append("must be at most \(Self.maxBytes) bytes") }
    if Self.commonPasswords.contains(password) || Self.commonPasswords.contains(password.lowercased()) {
      problems.append("is too common")
    }
    if let email, password.lowercased() == email { problems.append("must not be the email address") }
    return problems
  }
}

/// The roles a user can hold.
package enum UserRoles {
  package static let known: Set<String> = ["user", "author", "admin"]
}
