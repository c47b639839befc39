-- Placeholder for schema v11, taken by another branch; dropped when that branch's 0011 is
-- merged (migrations are numbered 1..n without gaps, so 0012 needs an 0011 to apply).
SELECT 1;
